-- `dsms_apply` runs its statements with generic plans, prepared once per connection. Left to
-- itself, PL/pgSQL plans statements whose parameters are arrays afresh at every call (a custom plan
-- looks cheaper to the planner, which sees the arrays' sizes): more than a third of a pushed row's
-- apply time went to planning. The function only takes small batches (`ONE_MESSAGE_MAX` rows),
-- every statement in it reaches `vente` by primary key, and a generic plan does the same.
ALTER FUNCTION dsms_apply(uuid[], text[], text[], numeric[], date[], text[], timestamptz[], boolean[], bigint[], text[], text[],
                          uuid, text, uuid, bigint, uuid, uuid, timestamptz, text)
    SET plan_cache_mode = force_generic_plan;
