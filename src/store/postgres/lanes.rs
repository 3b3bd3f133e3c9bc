//! Kept connections ("lanes"): one connection each for the calls whose latency a user sees — a
//! push, a round's small apply, a client's create — taken out of the pool. sqlx checks every
//! connection given back to its pool with a ping: one more round trip after each statement (CPU on
//! both ends, and a connection unavailable for a whole round trip over a wide-area link). A lane
//! in use goes through the pool as before. Owns: taking, keeping and dropping those connections.
//! Leaves: the statements (push.rs, write.rs).

use std::time::Instant;

use sqlx::PgConnection;
use sqlx::pool::PoolConnection;
use tokio::sync::{MappedMutexGuard, MutexGuard};

use super::{CHECK_IF_IDLE_FOR, PgStore, Suspect};

/// Which kept connection a call tries first.
#[derive(Clone, Copy, Debug)]
pub(super) enum Lane {
    Push = 0,
    Round = 1,
    Write = 2,
}

/// How many lanes a store keeps.
pub(super) const LANES: usize = 3;

/// A lane's connection, when it was last handed out, and whether a call found it broken.
pub(super) struct Kept {
    conn: PgConnection,
    used: Instant,
    dead: bool,
}

/// A connection for one call: a lane's kept one, or the pool's while the lane is busy.
pub(super) struct OnLane<'a> {
    conn: Conn<'a>,
    suspect: &'a Suspect,
}

enum Conn<'a> {
    Kept { kept: MappedMutexGuard<'a, Kept>, reused: bool },
    Pooled(PoolConnection<sqlx::Postgres>),
}

impl OnLane<'_> {
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        match &mut self.conn {
            Conn::Kept { kept, .. } => {
                kept.used = Instant::now();
                &mut kept.conn
            }
            Conn::Pooled(conn) => conn,
        }
    }

    /// After `error`: a kept connection that may be broken is given up (the next call takes
    /// another), and a broken link makes the pool check its connections for a while. True when
    /// the call should be made once more through the pool: a kept connection may have died while
    /// idle (a server restart, a NAT), which a pooled one is checked for. Callers only make calls
    /// that are safe to repeat.
    pub(super) fn broken(&mut self, error: &sqlx::Error) -> bool {
        self.suspect.note(error);
        let Conn::Kept { kept, reused } = &mut self.conn else { return false };
        if matches!(error, sqlx::Error::Database(_)) {
            return false;
        }
        kept.dead = true;
        *reused && matches!(error, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
    }
}

impl PgStore {
    /// `lane`'s kept connection when it is free, else a pooled one. The kept connection is taken
    /// from the pool the first time, after a call found it broken, and after it sat idle as long
    /// as the pool checks a connection after (a NAT may have dropped it without a word: waiting
    /// out a dead link would cost the caller a statement timeout).
    pub(super) async fn lane(&self, lane: Lane) -> Result<OnLane<'_>, sqlx::Error> {
        let suspect = &self.suspect;
        let Ok(mut slot) = self.lanes[lane as usize].try_lock() else {
            return Ok(OnLane { conn: Conn::Pooled(self.pool.acquire().await?), suspect });
        };
        let (kept, reused) = match slot.take() {
            Some(kept) if !kept.dead && kept.used.elapsed() < CHECK_IF_IDLE_FOR => (kept, true),
            _ => (Kept { conn: self.pool.acquire().await?.detach(), used: Instant::now(), dead: false }, false),
        };
        let kept = MutexGuard::map(slot, |slot| slot.insert(kept));
        Ok(OnLane { conn: Conn::Kept { kept, reused }, suspect })
    }
}
