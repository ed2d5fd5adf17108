//! Small typed values kept next to the orders (the pause, the daily budget, known explorers, the
//! last run of each job), as JSON in the `meta` table.

use redb::Durability;

use super::codec::META;
use super::{Store, StoreError, encode_error};

impl Store {
    pub fn meta_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.read()?;
        let meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
        let Some(bytes) = meta.get(key).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.corrupt(format!("meta value {key:?} does not read back: {e}")))
    }

    /// Stores a small value durably.
    pub fn meta_put<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(encode_error)?;
        let tx = self.write(Durability::Immediate)?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
            meta.insert(key, bytes.as_slice()).map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }
}
