//! Everything a batch reads before it decides, as one statement: each set of rows (the inbox's
//! record, the rows it will change, locked) is a scalar subquery of one `SELECT` that turns its
//! rows into a JSON array, one round trip instead of one per set. The subqueries run, and take
//! their locks, in the order added; every batch of a service adds them in the same order and
//! locks in key order, so batches never wait on each other in a circle. A data-modifying part
//! may come first ([`Reads::write`]), read back by its `RETURNING` rows.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr};
use serde::de::DeserializeOwned;

use super::writes::{Part, PartName, renumber};

#[derive(Debug, Default)]
pub struct Reads {
    writes: Vec<(&'static str, Part)>,
    reads: Vec<(&'static str, Part)>,
}

/// The rows each part returned, by name, as the JSON text PostgreSQL wrote: deserialized
/// straight into the caller's rows, without a `serde_json::Value` tree in between (a map and
/// a string per column of every row, built and dropped for each batch).
#[derive(Debug, Default)]
pub struct Loaded(HashMap<String, String>);

impl Loaded {
    /// The rows `name` returned, each deserialized from its columns (by name); none for a part
    /// that was not added.
    pub fn take<T: DeserializeOwned>(&mut self, name: PartName) -> Result<Vec<T>, DbErr> {
        match self.0.remove(name.as_str()) {
            Some(rows) => serde_json::from_str(&rows)
                .map_err(|e| DbErr::Custom(format!("unreadable rows of `{name}`: {e}"))),
            None => Ok(Vec::new()),
        }
    }
}

impl Reads {
    pub fn new() -> Self {
        Self::default()
    }

    /// A data-modifying statement run first (`INSERT ... RETURNING ...`), whose returned rows
    /// are read back as `name`. `None` adds nothing.
    pub fn write(&mut self, name: PartName, part: Option<Part>) -> &mut Self {
        if let Some(part) = part {
            self.writes.push((name.as_str(), part));
        }
        self
    }

    /// A query (its own `$1`, `$2`, ...) whose rows are read back as `name`. `None` adds
    /// nothing.
    pub fn read(&mut self, name: PartName, query: Option<Part>) -> &mut Self {
        if let Some(query) = query {
            self.reads.push((name.as_str(), query));
        }
        self
    }

    pub async fn execute(self, db: &impl ConnectionTrait) -> Result<Loaded, DbErr> {
        if self.writes.is_empty() && self.reads.is_empty() {
            return Ok(Loaded::default());
        }
        let Self { writes, reads } = self;
        let mut sql = String::new();
        let mut values = Vec::new();
        let mut write_names = Vec::with_capacity(writes.len());
        // The parts' values are moved, not cloned: a part's rows travel as one JSON text of
        // the whole batch (`db::rows`).
        for (i, (name, part)) in writes.into_iter().enumerate() {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            sql.push_str(name);
            sql.push_str(" AS (");
            sql.push_str(&renumber(&part.sql, values.len()));
            sql.push(')');
            values.extend(part.values);
            write_names.push(name);
        }
        sql.push_str(if sql.is_empty() {
            "SELECT "
        } else {
            " SELECT "
        });
        let mut names = Vec::new();
        let mut first = true;
        let json =
            |query: &str| format!("(SELECT coalesce(json_agg(r), '[]')::text FROM ({query}) r)");
        for name in write_names {
            if !first {
                sql.push_str(", ");
            }
            first = false;
            sql.push_str(&json(&format!("SELECT * FROM {name}")));
            sql.push_str(" AS ");
            sql.push_str(name);
            names.push(name);
        }
        for (name, part) in reads {
            if !first {
                sql.push_str(", ");
            }
            first = false;
            sql.push_str(&json(&renumber(&part.sql, values.len())));
            sql.push_str(" AS ");
            sql.push_str(name);
            values.extend(part.values);
            names.push(name);
        }
        let row = db
            .query_one_raw(super::stmt(&sql, values))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the rows of a batch".into()))?;
        let mut loaded = HashMap::with_capacity(names.len());
        for name in names {
            loaded.insert(name.to_owned(), row.try_get::<String>("", name)?);
        }
        Ok(Loaded(loaded))
    }
}
