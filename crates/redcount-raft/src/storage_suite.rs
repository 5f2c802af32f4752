//! openraft's own compliance suite for storage implementations, run against redcount's log store
//! and its Redis-backed state machine (a real redis-server per case, in a temp dir): membership and
//! initial-state recovery, vote, log reads, purge, truncate, apply, snapshot transfer.

use crate::log_store::LogStore;
use crate::redis_machine::RedisMachine;
use crate::state_machine::StateMachine;
use crate::types::{log_error, sm_error, StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<RedisMachine>, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine<RedisMachine>), StorageError> {
        let dir = tempfile::tempdir().map_err(log_error)?;
        let log = LogStore::open(dir.path()).map_err(sm_error)?;
        let sm = StateMachine::open(dir.path()).await.map_err(sm_error)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn log_store_and_state_machine_pass_openraft_storage_suite() {
    let outcome = Suite::<
        TypeConfig,
        LogStore,
        StateMachine<RedisMachine>,
        Builder,
        tempfile::TempDir,
    >::test_all(Builder);
    if let Err(err) = outcome {
        panic!("openraft storage suite: {err}");
    }
}
