//! [`Statements`]: several SQL statements, each with its bound values, sent to SQLite in one
//! trip.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every command is a message to
//! that thread and a wake-up back. On the writer, which runs one write after another, those
//! trips (not SQLite's work) are most of what a write costs (`docs/benchmarks.md`, "Pages and
//! fsyncs per create" and "Round trips per create"). A write whose statements do not depend on
//! each other's results therefore sends them as one string: sqlx's SQLite driver prepares the
//! statements of a query string one after the other, binds to each the next values in order,
//! and stops at the first that fails. What a failing statement's predecessors wrote is undone by
//! the write's savepoint (`writer.rs`), so nothing is half-written.
//!
//! The statements keep their text and their values apart, rather than in sqlx's query builder,
//! so that the writer can send the statements of several writes in one query, and send a write
//! again when one before it in that query failed (`writer.rs`, "Runs").
//!
//! sqlx marks several statements in one prepared query as SQLite-only behaviour it may drop; the
//! tests below pin what the store relies on, so an upgrade that drops it fails them rather than
//! the service.

use std::sync::Arc;

use sqlx::sqlite::{SqliteArguments, SqliteQueryResult};
use sqlx::{Arguments, AssertSqlSafe, SqliteConnection};

/// A value bound to a `?` of [`Statements`]: the three SQLite types the store writes. Text is
/// shared, so that binding it again (a write sent again) copies no bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer (a flag is 0 or 1).
    Integer(i64),
    /// Text.
    Text(Arc<str>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Integer(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Self::Integer(i64::from(value))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value.into())
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.into())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

/// Statements pushed one after the other, each ended with `"; "`, and bound in the order their
/// `?` appear.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    sql: String,
    values: Vec<Value>,
}

impl Statements {
    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a `?` bound to `value`.
    pub(crate) fn push_bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.sql.push('?');
        self.values.push(value.into());
        self
    }

    /// Appends `?, ?, …`, one bound to each of `values`.
    pub(crate) fn push_binds(&mut self, values: impl IntoIterator<Item = Value>) -> &mut Self {
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(value);
        }
        self
    }

    /// The statements' text.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// Binds the statements' values, in order, after those already in `arguments`.
    ///
    /// # Errors
    /// When sqlx cannot encode a value (it can encode every [`Value`]).
    pub(crate) fn bind_to(&self, arguments: &mut SqliteArguments) -> Result<(), sqlx::Error> {
        for value in &self.values {
            let added = match value {
                Value::Null => arguments.add(None::<i64>),
                Value::Integer(number) => arguments.add(*number),
                Value::Text(text) => arguments.add(Arc::clone(text)),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        Ok(())
    }

    /// How many statements the text holds: SQLite runs each, and sqlx reports the end of each,
    /// so the writer tells by this count which write of a query a result or a failure belongs
    /// to. Counts the `;` outside quoted text and a last statement without one; the store's
    /// statements hold no comments.
    pub(crate) fn count(&self) -> usize {
        count_statements(&self.sql)
    }

    /// Runs the statements on `conn`, in one trip.
    ///
    /// # Errors
    /// The first statement's error (the statements after it do not run).
    pub(crate) async fn execute(
        self,
        conn: &mut SqliteConnection,
    ) -> Result<SqliteQueryResult, sqlx::Error> {
        let mut arguments = SqliteArguments::default();
        self.bind_to(&mut arguments)?;
        sqlx::query_with(AssertSqlSafe(self.sql), arguments)
            .execute(conn)
            .await
    }
}

/// How many statements `sql` holds ([`Statements::count`]).
pub(crate) fn count_statements(sql: &str) -> usize {
    let mut count = 0;
    let mut pending = false;
    let mut quote = None;
    for character in sql.chars() {
        match quote {
            // A doubled quote inside quoted text closes and reopens it: same count.
            Some(open) if character == open => quote = None,
            Some(_) => {}
            None => match character {
                '\'' | '"' => {
                    quote = Some(character);
                    pending = true;
                }
                ';' => {
                    if pending {
                        count += 1;
                    }
                    pending = false;
                }
                other if other.is_whitespace() => {}
                _ => pending = true,
            },
        }
    }
    count + usize::from(pending)
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Row, SqliteConnection};

    use super::*;

    async fn connection() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("in-memory database");
        sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .expect("schema");
        conn
    }

    fn insert(statements: &mut Statements, k: i64, v: &str) {
        statements.push("INSERT INTO t (k, v) VALUES (");
        statements.push_bind(k).push(", ").push_bind(v.to_owned());
        statements.push("); ");
    }

    async fn rows(conn: &mut SqliteConnection) -> Vec<(i64, String)> {
        sqlx::query("SELECT k, v FROM t ORDER BY k")
            .fetch_all(conn)
            .await
            .expect("rows")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    #[tokio::test]
    async fn every_statement_runs_with_its_own_values_in_order() {
        let mut conn = connection().await;
        let mut batch = Statements::default();
        insert(&mut batch, 1, "one");
        insert(&mut batch, 2, "two");
        batch.push("UPDATE t SET v = v || ");
        batch
            .push_bind("!".to_owned())
            .push(" WHERE k = ")
            .push_bind(2_i64);
        batch.push("; ");
        let done = batch.execute(&mut conn).await.expect("the statements run");
        assert_eq!(done.rows_affected(), 3);
        assert_eq!(
            rows(&mut conn).await,
            vec![(1, "one".to_owned()), (2, "two!".to_owned())]
        );

        // The same text again (now from sqlx's statement cache) binds the new values.
        let mut again = Statements::default();
        insert(&mut again, 3, "three");
        insert(&mut again, 4, "four");
        again.push("UPDATE t SET v = v || ");
        again
            .push_bind("?".to_owned())
            .push(" WHERE k = ")
            .push_bind(4_i64);
        again.push("; ");
        again
            .execute(&mut conn)
            .await
            .expect("the statements run again");
        assert_eq!(rows(&mut conn).await.len(), 4);
        assert_eq!(rows(&mut conn).await[3], (4, "four?".to_owned()));
    }

    #[tokio::test]
    async fn the_statements_after_a_failing_one_do_not_run() {
        let mut conn = connection().await;
        sqlx::query("INSERT INTO t (k, v) VALUES (2, 'taken')")
            .execute(&mut conn)
            .await
            .expect("seed");
        let mut batch = Statements::default();
        insert(&mut batch, 1, "one");
        insert(&mut batch, 2, "clash");
        insert(&mut batch, 3, "three");
        let error = batch
            .execute(&mut conn)
            .await
            .expect_err("the second statement breaks the key");
        assert!(
            matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation()),
            "{error}"
        );
        // The first ran (a savepoint around the whole is what undoes it), the third did not.
        assert_eq!(
            rows(&mut conn).await,
            vec![(1, "one".to_owned()), (2, "taken".to_owned())]
        );
    }

    #[test]
    fn the_count_is_of_the_statements_outside_quoted_text() {
        let count = |sql: &str| count_statements(sql);
        assert_eq!(count(""), 0);
        assert_eq!(count("  ; ;"), 0);
        assert_eq!(count("COMMIT"), 1);
        assert_eq!(count("SAVEPOINT write; RELEASE write; "), 2);
        assert_eq!(count("BEGIN; INSERT INTO t VALUES (1, 'a;b'); COMMIT"), 3);
        assert_eq!(count("INSERT INTO t VALUES (1, 'it''s; fine'); "), 1);
        assert_eq!(count("SELECT \"odd;name\" FROM t; SELECT 1;"), 2);
    }

    /// The writer attributes what a query returns to its statements by counting their ends.
    #[tokio::test]
    async fn each_statement_reports_its_end_and_its_rows_come_before_it() {
        use sqlx::{Either, Executor, Row};

        let mut conn = connection().await;
        let mut batch = Statements::default();
        insert(&mut batch, 1, "one");
        batch
            .push("SELECT v FROM t WHERE k = ")
            .push_bind(1_i64)
            .push("; ");
        insert(&mut batch, 2, "two");
        assert_eq!(batch.count(), 3);
        let mut arguments = SqliteArguments::default();
        batch.bind_to(&mut arguments).expect("values bind");
        let mut stream = conn.fetch_many(sqlx::query_with(
            AssertSqlSafe(batch.sql().to_owned()),
            arguments,
        ));
        let mut items = Vec::new();
        while let Some(item) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            items.push(item.expect("the statements run"));
        }
        let shape: Vec<String> = items
            .iter()
            .map(|item| match item {
                Either::Left(_) => "end".to_owned(),
                Either::Right(row) => format!("row {}", row.get::<String, _>(0)),
            })
            .collect();
        assert_eq!(shape, ["end", "row one", "end", "end"]);
    }
}
