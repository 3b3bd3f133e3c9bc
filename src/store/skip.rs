//! The apply log, read back: which ranges of a region's feed a reader already holds, so that a
//! page skips them without visiting a row. Owns: the rule and the plan of a page (segments to
//! read, ranges to skip), the same for both engines. Leaves: the log's rows and the reads to
//! each engine (`postgres/feed.rs`, `sqlite/feed.rs`), the log's writing to the apply plan.
//!
//! Why skipping is safe. Each apply of a batch read from source S's feed into this region T
//! writes one log row (`dsms_applied`): the range of T's feed positions its rows took (PostgreSQL:
//! the applying transaction's id; SQLite: the counter values it took under the write lock), S's
//! `db_id`, and `end`, the position of S's feed the batch ended at (where T's cursor on S moved).
//! 1. A row still at one of those positions is the version the apply wrote, a version S held at a
//!    position of its feed at or below `end`: a later write or apply of that row moves it to a new
//!    position, outside the range (rows never move back, positions are never reused).
//! 2. A reader U whose cursor on S is at or past `end` has read S's feed through `end`. Positions
//!    below a cursor are final when read (PostgreSQL reads below the oldest running transaction,
//!    SQLite's counter is gap-free), so U read each such version from S, or the newer one S held
//!    there by then, or S has since moved the row past U's cursor with a newer version, which U
//!    reads from S or, if S cannot reach U, through T (T applies it in a later batch with a later
//!    `end`, not skipped for U). Versions only grow, so U holds that version or a newer one, or will.
//!    (By induction over rounds: a page U read from S may itself have skipped ranges by this rule.)
//! 3. U = S holds them too: it sent them (the `via` rule, row by row, for what no range covers).
//!
//! So a range whose every log row is held by the reader is covered without being read, and the
//! reader's cursor moves past it. A reader that could not read S (an outage) has a cursor on S
//! below `end`: it gets T's copies, forwarded as before. Rows pushed outside the feed
//! (`Batch::push`) and local writes have no log row: they are read as before.
//! Positions must never be handed out again while log rows name them: each log row carries this
//! database's identity when written, and only rows of its current identity are read, so a
//! database restored elsewhere (whose transaction ids may start lower) and given a new identity
//! ignores its older log.
//! A reader whose database lost rows but kept its cursors (restored from a backup with its
//! cursors, which stay consistent with its rows) reads from older cursors: nothing is skipped
//! that it does not hold. Log rows are never needed for correctness: losing one only costs reads.

use super::{FeedPage, FeedPosition, Reader};

/// Log rows read for one page at most: a page covers at most this many applies.
pub(crate) const LOG_ROWS_PER_PAGE: u32 = 64;

/// One row of the apply log: the feed positions `lo..=hi` hold copies applied from `source_db`'s
/// feed up to `end` (`rows` written then).
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    pub lo: i64,
    pub hi: i64,
    pub source_db: uuid::Uuid,
    pub end: FeedPosition,
    pub rows: i64,
}

/// Where a page reads: segments of the feed in order, each followed by a range it skips.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub segments: Vec<Segment>,
    /// The plan stops before the end of the feed (more log rows than one page reads).
    pub truncated: bool,
}

/// Positions after `after` and below `before`, then the skipped range that ends at `skip`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub after: FeedPosition,
    pub before: i64,
    pub skip: Option<Skip>,
}

impl Segment {
    /// Whether the segment may hold a row at all (a cursor inside a skipped range leaves none).
    pub fn is_empty(&self) -> bool {
        self.before <= self.after.pos
    }
}

/// A range skipped: its last position (every id) and the rows the log says it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Skip {
    pub end: FeedPosition,
    pub rows: u64,
}

/// The last position of a range: after every row at `hi`, whatever its id.
fn range_end(hi: i64) -> FeedPosition {
    FeedPosition { pos: hi, id: uuid::Uuid::max() }
}

/// Plans a page after `after` and below `bound`, from the log rows of that window in feed order
/// (`logged`, as many as `LOG_ROWS_PER_PAGE` at most: `capped` when that many were read).
pub(crate) fn plan(after: FeedPosition, bound: i64, mut logged: Vec<Logged>, capped: bool, reader: Option<&Reader>) -> Plan {
    let mut bound = bound;
    let mut truncated = false;
    if capped {
        // The last range may have more log rows than were read (a bulk load logs one per source):
        // this page stops before it.
        if let Some(last) = logged.last().map(|l| l.lo) {
            if logged.iter().any(|l| l.lo != last) {
                logged.retain(|l| l.lo != last);
                bound = bound.min(last);
                truncated = true;
            } else {
                logged.clear();
            }
        }
    }
    let mut segments = Vec::new();
    let mut from = after;
    if let Some(reader) = reader {
        let mut rest = logged.as_slice();
        while let Some(first) = rest.first() {
            let same = rest.iter().take_while(|l| l.lo == first.lo && l.hi == first.hi).count();
            let (range, tail) = rest.split_at(same);
            rest = tail;
            let end = range_end(first.hi);
            if end <= from || first.hi >= bound || !range.iter().all(|l| reader.holds(l.source_db, l.end)) {
                continue;
            }
            let rows = range.iter().map(|l| u64::try_from(l.rows).unwrap_or(0)).sum();
            segments.push(Segment { after: from, before: first.lo, skip: Some(Skip { end, rows }) });
            from = end;
        }
    }
    segments.push(Segment { after: from, before: bound, skip: None });
    Plan { segments, truncated }
}

/// The segments of `plan` still to read once the positions below `upto` (of its first segment)
/// were read with the page's first statement; the empty ones left out.
pub(crate) fn unread(plan: &Plan, upto: i64) -> Vec<Segment> {
    plan.segments
        .iter()
        .filter(|s| s.before > upto)
        .map(|s| Segment { after: s.after.max(FeedPosition { pos: upto - 1, id: uuid::Uuid::max() }), ..*s })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Completes a page read along `plan` (`read`: its rows, at most `limit`, in feed order): the
/// ranges it skipped, where it ends, whether more follows.
pub(crate) fn finish(plan: &Plan, mut read: FeedPage, limit: u32) -> FeedPage {
    let skips = plan.segments.iter().filter_map(|s| s.skip);
    if read.scanned >= limit as usize {
        // Full: it ends at its last row, after the ranges skipped before it.
        let last = read.end;
        read.skipped = skips.filter(|s| last.is_some_and(|last| s.end < last)).map(|s| s.rows).sum();
        read.more = true;
    } else {
        let mut end = read.end;
        for skip in skips {
            read.skipped += skip.rows;
            end = end.max(Some(skip.end));
        }
        read.end = end;
        read.more = plan.truncated;
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pos: i64) -> FeedPosition {
        FeedPosition { pos, id: uuid::Uuid::nil() }
    }

    fn logged(lo: i64, hi: i64, source: u128, end: i64) -> Logged {
        Logged { lo, hi, source_db: uuid::Uuid::from_u128(source), end: at(end), rows: hi - lo + 1 }
    }

    fn reader(cursors: &[(u128, i64)]) -> Reader {
        Reader {
            db_id: uuid::Uuid::from_u128(99),
            cursors: cursors.iter().map(|&(db, pos)| (uuid::Uuid::from_u128(db), at(pos))).collect(),
        }
    }

    #[test]
    fn ranges_the_reader_has_read_past_are_skipped_and_the_others_read() {
        let log = vec![logged(10, 14, 1, 100), logged(20, 24, 2, 50), logged(30, 34, 99, 7)];
        let plan = plan(at(5), 40, log, false, Some(&reader(&[(1, 100), (2, 49)])));
        let bounds: Vec<(i64, i64, Option<i64>)> =
            plan.segments.iter().map(|s| (s.after.pos, s.before, s.skip.map(|k| k.end.pos))).collect();
        // Source 1 read through 100: skipped; source 2 only through 49: read; the reader's own: skipped.
        assert_eq!(bounds, vec![(5, 10, Some(14)), (14, 30, Some(34)), (34, 40, None)]);
        let page = finish(&plan, FeedPage::default(), 10);
        assert_eq!((page.skipped, page.end.map(|e| e.pos), page.more), (10, Some(34), false));
    }

    #[test]
    fn without_a_reader_or_past_the_bound_nothing_is_skipped() {
        let log = vec![logged(10, 14, 1, 100)];
        assert_eq!(plan(at(5), 40, log.clone(), false, None).segments.len(), 1);
        assert_eq!(plan(at(5), 12, log, false, Some(&reader(&[(1, 100)]))).segments.len(), 1);
    }

    #[test]
    fn a_range_is_skipped_only_when_every_source_it_holds_copies_from_is_held() {
        let log = vec![logged(10, 10, 1, 100), logged(10, 10, 2, 100)];
        assert_eq!(plan(at(5), 40, log.clone(), false, Some(&reader(&[(1, 100)]))).segments.len(), 1);
        assert_eq!(plan(at(5), 40, log, false, Some(&reader(&[(1, 100), (2, 100)]))).segments.len(), 2);
    }

    #[test]
    fn a_capped_log_stops_the_page_before_its_last_range() {
        let log = vec![logged(10, 10, 1, 100), logged(20, 20, 1, 100)];
        let plan = plan(at(5), 40, log, true, Some(&reader(&[(1, 100)])));
        assert!(plan.truncated);
        assert_eq!(plan.segments.last().map(|s| s.before), Some(20));
    }
}
