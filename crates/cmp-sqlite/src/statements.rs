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
//! sqlx marks several statements in one prepared query as SQLite-only behaviour it may drop; the
//! tests below pin what the store relies on, so an upgrade that drops it fails them rather than
//! the service.

use sqlx::{QueryBuilder, Sqlite};

/// Statements pushed one after the other, each ended with `"; "`, and bound in the order their
/// `?` appear; `build()` makes one query of them.
pub(crate) type Statements = QueryBuilder<Sqlite>;

/// An empty list of statements.
pub(crate) fn statements() -> Statements {
    QueryBuilder::new("")
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
        let mut batch = statements();
        insert(&mut batch, 1, "one");
        insert(&mut batch, 2, "two");
        batch.push("UPDATE t SET v = v || ");
        batch
            .push_bind("!".to_owned())
            .push(" WHERE k = ")
            .push_bind(2_i64);
        batch.push("; ");
        let done = batch
            .build()
            .execute(&mut conn)
            .await
            .expect("the statements run");
        assert_eq!(done.rows_affected(), 3);
        assert_eq!(
            rows(&mut conn).await,
            vec![(1, "one".to_owned()), (2, "two!".to_owned())]
        );

        // The same text again (now from sqlx's statement cache) binds the new values.
        let mut again = statements();
        insert(&mut again, 3, "three");
        insert(&mut again, 4, "four");
        again.push("UPDATE t SET v = v || ");
        again
            .push_bind("?".to_owned())
            .push(" WHERE k = ")
            .push_bind(4_i64);
        again.push("; ");
        again
            .build()
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
        let mut batch = statements();
        insert(&mut batch, 1, "one");
        insert(&mut batch, 2, "clash");
        insert(&mut batch, 3, "three");
        let error = batch
            .build()
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
}
