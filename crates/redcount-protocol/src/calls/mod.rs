//! One typed call per library function, in modules named as the Lua files that define them
//! (`library/claim.lua` -> `calls/claim.rs`): each struct holds the function's arguments by name,
//! lays them out in the order the function reads them, and reads its reply. [`Job::send`] sends
//! one; [`Job::send_pair`] sends two in one round trip (a pipeline), so a saved round trip is a
//! pair of calls, not another method.

use redis::{Cmd, Value};

use crate::{Job, Result};

pub mod claim;
pub mod commit;
pub mod failures;
pub mod jobs;
pub mod lifecycle;
pub mod partials;
pub mod reads;

/// A call of one library function on one job (its keys are the job's).
pub trait Call {
    /// The function's registered name (one of [`crate::FUNCTIONS`]).
    const FUNCTION: &'static str;
    /// What its reply says.
    type Reply;
    /// Its arguments after the job's keys, in the function's order (`now` first where it takes one).
    fn args(&self) -> Vec<Vec<u8>>;
    /// Reads its reply; `Err` says what was unexpected about it.
    fn reply(&self, value: Value) -> std::result::Result<Self::Reply, String>;
}

impl Job {
    /// Sends `call` (with the link's retries: every call is safe to send again) and reads its reply.
    pub fn send<C: Call>(&mut self, call: &C) -> Result<C::Reply> {
        let value = self.fcall(C::FUNCTION, call.args())?;
        call.reply(value)
            .map_err(|detail| self.bad_reply(C::FUNCTION, detail))
    }

    /// Sends `a` and `b` in one pipeline, one round trip, and reads both replies.
    pub fn send_pair<A: Call, B: Call>(&mut self, a: &A, b: &B) -> Result<(A::Reply, B::Reply)> {
        let cmds = [self.command(a), self.command(b)];
        let mut replies = self.pipeline(A::FUNCTION, &cmds)?.into_iter();
        let (Some(first), Some(second)) = (replies.next(), replies.next()) else {
            return Err(self.bad_reply(A::FUNCTION, "a pipeline of two answered fewer"));
        };
        let first = a
            .reply(first)
            .map_err(|detail| self.bad_reply(A::FUNCTION, detail))?;
        let second = b
            .reply(second)
            .map_err(|detail| self.bad_reply(B::FUNCTION, detail))?;
        Ok((first, second))
    }

    /// The `FCALL` (or `FCALL_RO`) of `call`, to send in a pipeline.
    pub(crate) fn command<C: Call>(&self, call: &C) -> Cmd {
        debug_assert!(
            crate::function(C::FUNCTION).is_some(),
            "{} is not in FUNCTIONS",
            C::FUNCTION
        );
        self.fcall_cmd(C::FUNCTION, &call.args())
    }
}

/// A number as an argument.
pub(crate) fn arg(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The largest integer the library takes (15 digits): budgets above it mean "no limit" anyway.
pub(crate) const MAX_ARG: u64 = 999_999_999_999_999;

/// An array reply's items.
pub(crate) fn items(value: Value) -> std::result::Result<Vec<Value>, String> {
    crate::reply::array(value).ok_or_else(|| "not an array".to_string())
}

/// The first item of a reply as a string: the verdict most functions answer with.
pub(crate) fn verdict(items: &[Value]) -> String {
    items
        .first()
        .and_then(crate::reply::string)
        .unwrap_or_default()
}
