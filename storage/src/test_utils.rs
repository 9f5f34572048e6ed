//! Test helpers (feature `test-utils`): write what the checked API refuses, to build the damaged
//! databases that earlier builds could leave behind.

use crate::{BlockRef, ChainsDb, HeadKind, Result, codec};

/// Stores `block` as the `head` (or removes it for `None`) without any check, and flushes: a
/// database as a build that trusted the node's safe/finalized answers left it.
pub fn write_head_unchecked(db: &ChainsDb, head: HeadKind, block: Option<BlockRef>) -> Result<()> {
    let (sled, meta, ..) = db.trees();
    match block {
        Some(b) => meta.insert(head.key(), &codec::encode_head(&b)[..])?,
        None => meta.remove(head.key())?,
    };
    sled.flush()?;
    Ok(())
}
