//! Several set-based writes sent as one statement.
//!
//! The writes of a batch (its effects, its inbox rows, its outbox rows) touch different tables
//! and depend only on what the batch decided, so they go to PostgreSQL as the data-modifying
//! parts of one statement, `WITH a AS (INSERT ...), b AS (UPDATE ...) SELECT ...`: one round
//! trip instead of one per table. Every part runs on the same snapshot and none sees another's
//! rows, so no two parts may touch the same row; constraints and foreign keys are checked at the
//! end of the statement, with every part's rows in place. A part may read another's `RETURNING`
//! rows by its name (`WHERE id IN (SELECT id FROM placed)`).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Statement, Value};

/// One data-modifying statement (`INSERT`, `UPDATE`, `DELETE`) ending in `RETURNING ...`, with
/// its own `$1`, `$2`, ... placeholders.
#[derive(Debug, Clone)]
pub struct Part {
    pub(super) sql: String,
    pub(super) values: Vec<Value>,
    /// Whether [`Writes::execute`] collects the `id` column this part returns.
    ids: bool,
    /// Whether it also collects the `message_id` column, in the same order.
    message_ids: bool,
}

impl Part {
    pub fn new(sql: impl Into<String>, values: Vec<Value>) -> Self {
        Self {
            sql: sql.into(),
            values,
            ids: false,
            message_ids: false,
        }
    }

    /// Has [`Writes::execute`] collect the `BIGINT` column `id` this part returns.
    pub fn collecting_ids(mut self) -> Self {
        self.ids = true;
        self
    }

    /// Has [`Writes::execute`] collect the `id` column and the `UUID` column `message_id` this
    /// part returns, both in the order of `id`.
    pub fn collecting_message_ids(mut self) -> Self {
        self.ids = true;
        self.message_ids = true;
        self
    }

    /// Runs this part alone; returns the rows it wrote.
    pub async fn execute(self, db: &impl ConnectionTrait) -> Result<u64, DbErr> {
        Ok(db
            .execute_raw(super::stmt(&self.sql, self.values))
            .await?
            .rows_affected())
    }
}

/// The name of a part of a batch statement, by which its rows are read back: declared once as a
/// constant and used for both, so a part cannot be asked for under a name it was never given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartName(&'static str);

impl PartName {
    /// `name` must be a plain lower-case SQL identifier; anything else fails to compile where
    /// the constant is declared.
    pub const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        assert!(!bytes.is_empty(), "a part name is not empty");
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            assert!(
                b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit()),
                "a part name is a plain lower-case SQL identifier"
            );
            i += 1;
        }
        Self(name)
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for PartName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Parts to run as one statement, in the order added.
#[derive(Debug, Default)]
pub struct Writes {
    parts: Vec<(&'static str, Part)>,
}

/// How many rows each part returned, by name, and the ids of those collecting them.
#[derive(Debug, Default)]
pub struct Counts {
    rows: HashMap<String, i64>,
    ids: HashMap<String, Vec<i64>>,
    message_ids: HashMap<String, Vec<uuid::Uuid>>,
}

impl Counts {
    /// Rows `name` returned; 0 for a part that was not added.
    pub fn get(&self, name: PartName) -> i64 {
        self.rows.get(name.0).copied().unwrap_or_default()
    }

    /// The ids `name` returned (see [`Part::collecting_ids`]), in ascending order.
    pub fn take_ids(&mut self, name: PartName) -> Vec<i64> {
        self.ids.remove(name.0).unwrap_or_default()
    }

    /// The message ids `name` returned (see [`Part::collecting_message_ids`]), in the order of
    /// its ids.
    pub fn take_message_ids(&mut self, name: PartName) -> Vec<uuid::Uuid> {
        self.message_ids.remove(name.0).unwrap_or_default()
    }
}

impl Writes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `part` under `name` (a plain SQL identifier). `None` adds nothing: an empty set of
    /// rows writes nothing.
    pub fn add(&mut self, name: PartName, part: Option<Part>) -> &mut Self {
        if let Some(part) = part {
            self.parts.push((name.0, part));
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Runs every part; returns the rows each returned.
    pub async fn execute(self, db: &impl ConnectionTrait) -> Result<Counts, DbErr> {
        if self.parts.is_empty() {
            return Ok(Counts::default());
        }
        let names: Vec<(&'static str, bool, bool)> = self
            .parts
            .iter()
            .map(|(name, part)| (*name, part.ids, part.message_ids))
            .collect();
        let mut columns = Vec::new();
        for (name, ids, message_ids) in &names {
            columns.push(format!("(SELECT count(*) FROM {name}) AS {name}"));
            if *ids {
                columns.push(format!("{} AS {name}_ids", ids_of(PartName(name), "id")));
            }
            if *message_ids {
                columns.push(format!(
                    "{} AS {name}_message_ids",
                    ids_of(PartName(name), "message_id")
                ));
            }
        }
        let select = format!("SELECT {}", columns.join(", "));
        let row = db
            .query_one_raw(self.statement(&select))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the counts of a write".into()))?;
        let mut counts = Counts::default();
        for (name, ids, message_ids) in names {
            counts
                .rows
                .insert(name.to_owned(), row.try_get::<i64>("", name)?);
            if ids {
                counts.ids.insert(
                    name.to_owned(),
                    row.try_get::<Vec<i64>>("", &format!("{name}_ids"))?,
                );
            }
            if message_ids {
                counts.message_ids.insert(
                    name.to_owned(),
                    row.try_get::<Vec<uuid::Uuid>>("", &format!("{name}_message_ids"))?,
                );
            }
        }
        Ok(counts)
    }

    /// Runs every part and returns the rows of `select`, a query over the parts' names.
    pub async fn query(
        self,
        db: &impl ConnectionTrait,
        select: &str,
    ) -> Result<Vec<QueryResult>, DbErr> {
        db.query_all_raw(self.statement(select)).await
    }

    fn statement(self, select: &str) -> Statement {
        let mut sql = String::from("WITH ");
        let mut values = Vec::new();
        for (i, (name, part)) in self.parts.into_iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(name);
            sql.push_str(" AS (");
            sql.push_str(&renumber(&part.sql, values.len()));
            sql.push(')');
            values.extend(part.values);
        }
        sql.push(' ');
        sql.push_str(select);
        super::stmt(&sql, values)
    }
}

/// The `column` of every row the part `name` returned, as an array in the order of its `id`s.
pub fn ids_of(name: PartName, column: &str) -> String {
    format!("(SELECT coalesce(array_agg({column} ORDER BY id), '{{}}') FROM {name})")
}

/// `sql` with every placeholder `$n` shifted to `$(n + offset)`. The statements written here
/// hold no `$` other than placeholders (no dollar quoting).
pub(super) fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_shifted_past_the_earlier_parts_values() {
        assert_eq!(
            renumber("UPDATE t SET a = $1 WHERE b = $2 AND c = ANY($12)", 3),
            "UPDATE t SET a = $4 WHERE b = $5 AND c = ANY($15)"
        );
        assert_eq!(renumber("SELECT $1", 0), "SELECT $1");
    }

    #[test]
    #[should_panic(expected = "plain lower-case SQL identifier")]
    fn a_part_name_that_is_no_plain_identifier_is_refused() {
        let _ = PartName::new("orders; DROP TABLE x");
    }

    #[test]
    fn parts_become_named_ctes_with_their_values_in_order() {
        let mut writes = Writes::new();
        writes
            .add(
                PartName::new("a"),
                Some(Part::new(
                    "INSERT INTO t (x) VALUES ($1) RETURNING 1",
                    vec![1.into()],
                )),
            )
            .add(PartName::new("skipped"), None)
            .add(
                PartName::new("b"),
                Some(Part::new(
                    "UPDATE u SET y = $1 WHERE z = $2 RETURNING 1",
                    vec![2.into(), 3.into()],
                )),
            );
        let statement = writes.statement("SELECT 1");
        assert_eq!(
            statement.sql,
            "WITH a AS (INSERT INTO t (x) VALUES ($1) RETURNING 1), \
             b AS (UPDATE u SET y = $2 WHERE z = $3 RETURNING 1) SELECT 1"
        );
        assert_eq!(statement.values.map(|v| v.0.len()), Some(3));
    }
}
