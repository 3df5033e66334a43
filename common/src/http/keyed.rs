//! Rows kept under an id the client chooses (a customer's account, a product's stock): read
//! with `GET`, created or set with `PUT` in one upsert. A service gives the SQL and checks the
//! value it sets; the id check, the 404 and the 201-or-200 are here.

use axum::Json;
use axum::http::StatusCode;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

use super::error::ApiError;
use super::extract::{Violations, check_id};
use crate::db::stmt;

/// One table of such rows.
pub struct Keyed {
    /// The path parameter holding the id, as a 422 names it (`customer_id`).
    pub key: &'static str,
    /// What a 404 says before the id (`no product`).
    pub missing: &'static str,
    /// Reads the row of id `$1`.
    pub find: &'static str,
    /// Sets the values `$2`, `$3`, ... under id `$1`: `INSERT ... ON CONFLICT DO UPDATE ...
    /// RETURNING <row>, (xmax = 0) AS created` (`xmax` is 0 only on a row this statement
    /// inserted).
    pub upsert: &'static str,
}

impl Keyed {
    /// The row of `id`: 422 for an id out of the rule, 404 when there is none.
    pub async fn get<T: FromQueryResult>(
        &self,
        db: &impl ConnectionTrait,
        id: &str,
    ) -> Result<Json<T>, ApiError> {
        let mut violations = Violations::default();
        check_id(&mut violations, self.key, id);
        violations.finish(())?;
        T::find_by_statement(stmt(self.find, [id.into()]))
            .one(db)
            .await?
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("{} `{id}`", self.missing)))
    }

    /// Sets `values` (`$2`, `$3`, ... of the upsert) under `id` once the id and `check` (the
    /// caller's checks of the body, named after the id's) pass: 201 with the row it created,
    /// 200 with the row it changed.
    pub async fn put<T: FromQueryResult>(
        &self,
        db: &impl ConnectionTrait,
        id: &str,
        values: Vec<Value>,
        check: impl FnOnce(&mut Violations),
    ) -> Result<(StatusCode, Json<T>), ApiError> {
        self.check(id, check)?;
        self.upsert(db, id, values).await
    }

    /// The 422 for an id out of the rule or a body `check` refuses, before anything is written.
    pub fn check(&self, id: &str, check: impl FnOnce(&mut Violations)) -> Result<(), ApiError> {
        let mut violations = Violations::default();
        check_id(&mut violations, self.key, id);
        check(&mut violations);
        violations.finish(())
    }

    /// The upsert of [`Keyed::put`] alone, for a caller that checked first with
    /// [`Keyed::check`] and writes, on the same transaction, what goes with the change (an
    /// outbox row) before it commits.
    pub async fn upsert<T: FromQueryResult>(
        &self,
        db: &impl ConnectionTrait,
        id: &str,
        values: Vec<Value>,
    ) -> Result<(StatusCode, Json<T>), ApiError> {
        let row = db
            .query_one_raw(stmt(self.upsert, std::iter::once(id.into()).chain(values)))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("upsert returned no row".into()))?;
        let created: bool = row.try_get("", "created")?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(T::from_query_result(&row, "")?)))
    }
}
