//! `wasmfn:platform/sql@0.2.0` for WASI 0.3 guests: the same databases as `sql@0.1.0`, with
//! statements as concurrent host calls, so one request awaiting the database leaves the
//! instance free to run its other requests.
//!
//! Each call takes what it needs from the instance state (the store, the transaction) and
//! releases the store before it awaits the backend.

use std::sync::Arc;

use wasmfn_host_core::InstanceState;
use wasmtime::component::{Accessor, HasData, Linker, Resource};

use super::{Bounds, Connection, SqlStore, SqlValue, Transaction};
use bindings::wasmfn::platform::sql::{self, Error, Value};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/async",
        inline: "
            package wasmfn:host-bindings;
            world sql-async-imports { import wasmfn:platform/sql@0.2.0; }
        ",
        world: "wasmfn:host-bindings/sql-async-imports",
        // The `async func`s get `async | store` (concurrent) by default; the rest stay plain.
        imports: { default: trappable },
        with: {
            "wasmfn:platform/sql.connection": crate::sql::Connection,
            "wasmfn:platform/sql.transaction": crate::sql::Transaction,
        },
    });
}

/// The instance state as the 0.2.0 SQL imports see it.
struct SqlAsync;

impl HasData for SqlAsync {
    type Data<'a> = &'a mut InstanceState;
}

/// Link them on an engine for WASI 0.3 components (the others cannot run `async func`s).
pub(super) fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    if !linker.engine().get_concurrency_support() {
        return Ok(());
    }
    sql::add_to_linker::<_, SqlAsync>(linker, |s| s)?;
    Ok(())
}

type SqlResult<T> = wasmtime::Result<Result<T, Error>>;

interface_conversions!(sql);

/// The connection's store and the current invocation's bounds.
fn connection<T>(
    accessor: &Accessor<T, SqlAsync>,
    c: &Resource<Connection>,
) -> wasmtime::Result<(Arc<SqlStore>, Bounds)> {
    accessor.with(|mut access| {
        let state = access.get();
        let store = state.table().get(c)?.store.clone();
        Ok((store, Bounds::of_invocation(state)))
    })
}

fn finished() -> Error {
    Error::Other("the transaction is already finished".into())
}

impl sql::Host for InstanceState {}

impl sql::HostConnection for InstanceState {
    fn open(&mut self, name: String) -> SqlResult<Resource<Connection>> {
        match crate::stores::granted::<super::Sql>(self, &name) {
            Ok(store) => Ok(Ok(self.table().push(Connection { store })?)),
            Err(()) => Ok(Err(Error::NoSuchDatabase(name))),
        }
    }

    fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table().delete(c)?;
        Ok(())
    }
}

impl sql::HostTransaction for InstanceState {
    fn drop(&mut self, t: Resource<Transaction>) -> wasmtime::Result<()> {
        // Dropping the backend transaction rolls it back.
        self.table().delete(t)?;
        Ok(())
    }
}

impl<T: Send> sql::HostConnectionWithStore<T> for SqlAsync {
    async fn query(
        accessor: &Accessor<T, Self>,
        c: Resource<Connection>,
        statement: String,
        params: Vec<Value>,
    ) -> SqlResult<sql::RowSet> {
        let (store, bounds) = connection(accessor, &c)?;
        let params: Vec<SqlValue> = params.into_iter().map(to_value).collect();
        let call = store.backend().query(&statement, &params, bounds);
        Ok(outcome(
            crate::traced::call("sql query", "sql", store.name(), call).await,
        ))
    }

    async fn execute_batch(
        accessor: &Accessor<T, Self>,
        c: Resource<Connection>,
        statements: String,
    ) -> SqlResult<()> {
        let (store, bounds) = connection(accessor, &c)?;
        let call = store.backend().execute_batch(&statements, bounds);
        Ok(
            crate::traced::call("sql execute-batch", "sql", store.name(), call)
                .await
                .map_err(to_error),
        )
    }

    async fn begin(
        accessor: &Accessor<T, Self>,
        c: Resource<Connection>,
    ) -> SqlResult<Resource<Transaction>> {
        let (store, bounds) = connection(accessor, &c)?;
        let call = store.backend().begin(bounds);
        match crate::traced::call("sql begin", "sql", store.name(), call).await {
            Ok(tx) => accessor.with(|mut access| {
                let transaction = Transaction {
                    tx: Some(tx),
                    store,
                };
                Ok(Ok(access.get().table().push(transaction)?))
            }),
            Err(e) => Ok(Err(to_error(e))),
        }
    }
}

impl<T: Send> sql::HostTransactionWithStore<T> for SqlAsync {
    async fn query(
        accessor: &Accessor<T, Self>,
        t: Resource<Transaction>,
        statement: String,
        params: Vec<Value>,
    ) -> SqlResult<sql::RowSet> {
        // The backend transaction leaves the table while its statement runs; a second statement
        // on it meanwhile (a guest racing itself) is refused rather than interleaved.
        let taken = accessor.with(|mut access| -> wasmtime::Result<_> {
            let state = access.get();
            let bounds = Bounds::of_invocation(state);
            let transaction = state.table().get_mut(&t)?;
            Ok(transaction
                .tx
                .take()
                .map(|tx| (tx, transaction.store.clone(), bounds)))
        })?;
        let Some((mut tx, store, bounds)) = taken else {
            return Ok(Err(Error::Other(
                "the transaction is finished, or busy with another statement".into(),
            )));
        };
        let params: Vec<SqlValue> = params.into_iter().map(to_value).collect();
        let call = tx.query(&statement, &params, bounds);
        let result = crate::traced::call("sql query", "sql", store.name(), call).await;
        accessor.with(|mut access| {
            // The guest may have dropped the transaction meanwhile: then `tx` rolls back here.
            if let Ok(transaction) = access.get().table().get_mut(&t) {
                transaction.tx = Some(tx);
            }
        });
        Ok(outcome(result))
    }

    async fn commit(accessor: &Accessor<T, Self>, t: Resource<Transaction>) -> SqlResult<()> {
        let mut transaction = accessor.with(|mut access| access.get().table().delete(t))?;
        let Some(tx) = transaction.tx.take() else {
            return Ok(Err(finished()));
        };
        let name = transaction.store.name();
        Ok(crate::traced::call("sql commit", "sql", name, tx.commit())
            .await
            .map_err(to_error))
    }

    async fn rollback(accessor: &Accessor<T, Self>, t: Resource<Transaction>) -> SqlResult<()> {
        let mut transaction = accessor.with(|mut access| access.get().table().delete(t))?;
        let Some(tx) = transaction.tx.take() else {
            return Ok(Err(finished()));
        };
        let name = transaction.store.name();
        Ok(
            crate::traced::call("sql rollback", "sql", name, tx.rollback())
                .await
                .map_err(to_error),
        )
    }
}
