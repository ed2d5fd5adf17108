//! Small typed values kept next to the orders (the pause, the daily budget, known explorers, the
//! last run of each job): [`Key`], the name of one value together with the type it holds, and
//! [`Store::get`] and [`Store::put`], which read and write a value under its key as JSON in the
//! `meta` table.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use redb::Durability;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::META;
use super::{Store, StoreError, encode_error};

/// The name of one meta value and the type it holds.
///
/// Each key is declared once, as a constant next to the type it holds (or, for a family of keys
/// such as `job:<name>`, by one function next to that type), and every read and write goes
/// through it: so a key can only be read as the type it was written as, and no caller can spell a
/// name differently or pick another type for it. The name is what is stored, so renaming a key
/// orphans its old value; the stored JSON is the same as earlier releases wrote under the same names, so
/// their values read back through their key.
pub struct Key<T> {
    name: Cow<'static, str>,
    // `fn() -> T` rather than `T`: a key holds no value of its type, so it is `Send + Sync`
    // whatever `T` is.
    value: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    /// A key with a fixed name, for a constant: `const PAUSE: Key<Pause> = Key::new("pause");`.
    pub const fn new(name: &'static str) -> Key<T> {
        Key {
            name: Cow::Borrowed(name),
            value: PhantomData,
        }
    }

    /// A key whose name is made at run time, for a family of values of one type (the last run of
    /// each job under `job:<name>`). Build it in one function next to the type, so every member
    /// of the family is named the same way.
    pub fn dynamic(name: String) -> Key<T> {
        Key {
            name: Cow::Owned(name),
            value: PhantomData,
        }
    }

    /// The name the value is stored under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

// Written by hand: derives would demand `T: Clone` and `T: Debug`, which a key does not need.
impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        Key {
            name: self.name.clone(),
            value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Key<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl Store {
    /// The value stored under `key`, or `None` if none ever was. A stored value that does not
    /// read back as `T` is [`StoreError::Corrupt`], never a silent default.
    pub fn get<T: DeserializeOwned>(&self, key: &Key<T>) -> Result<Option<T>, StoreError> {
        self.read_meta(key.name())
    }

    /// Stores `value` under `key`, durably: it returns after the commit is on disk.
    pub fn put<T: Serialize>(&self, key: &Key<T>, value: &T) -> Result<(), StoreError> {
        self.write_meta(key.name(), value, &[])
    }

    /// [`Store::put`], with `notices` recorded in the outbox in the same transaction (sending
    /// paused, a job's run failed).
    pub fn put_noticed<T: Serialize>(
        &self,
        key: &Key<T>,
        value: &T,
        notices: &[crate::model::notice::Notice],
    ) -> Result<(), StoreError> {
        self.write_meta(key.name(), value, notices)
    }

    /// A value by its bare name, as releases before typed keys read it: for the tests that hold
    /// the stored form to what those releases wrote.
    #[cfg(test)]
    pub(crate) fn meta_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.read_meta(key)
    }

    /// Stores a value under a bare name, as releases before typed keys wrote it: for the tests.
    #[cfg(test)]
    pub(crate) fn meta_put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.write_meta(key, value, &[])
    }

    /// One read of the `meta` table; both the typed and the untyped reads go through it, so a
    /// value reads back the same either way.
    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let tx = self.read()?;
        let meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
        let Some(bytes) = meta.get(key).map_err(|e| self.db_err(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.corrupt(format!("meta value {key:?} does not read back: {e}")))
    }

    /// One durable write to the `meta` table, shared by the typed and the untyped writes.
    fn write_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        notices: &[crate::model::notice::Notice],
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(encode_error)?;
        let tx = self.write(Durability::Immediate)?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
            meta.insert(key, bytes.as_slice()).map_err(|e| self.db_err(e))?;
        }
        let inserted = self.insert_notices(&tx, notices)?;
        tx.commit().map_err(|e| self.db_err(e))?;
        self.notices_recorded(inserted);
        Ok(())
    }
}
