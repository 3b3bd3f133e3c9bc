-- The wake-up names its writer (the `dsms.writer` setting each dsms connection pool carries), so a
-- server does not wake itself for its own writes, which it already knows about; anyone else's
-- writes (another server, `dsms import`, plain SQL: an empty payload) still wake it.
CREATE OR REPLACE FUNCTION dsms_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('dsms.applying', true), '') <> 'on' THEN
        PERFORM pg_notify('dsms_vente', coalesce(current_setting('dsms.writer', true), ''));
    END IF;
    RETURN NULL;
END
$$;
