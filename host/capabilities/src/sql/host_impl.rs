//! `wasmfn:platform/sql` for guests.

use wasmfn_host_core::InstanceState;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::{Bounds, Connection, Sql, SqlError, SqlValue, Transaction};
use bindings::wasmfn::platform::sql::{self, Error, Value};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package wasmfn:host-bindings;
            world sql-imports { import wasmfn:platform/sql@0.1.0; }
        ",
        world: "wasmfn:host-bindings/sql-imports",
        imports: { default: async | trappable },
        with: {
            "wasmfn:platform/sql.connection": crate::sql::Connection,
            "wasmfn:platform/sql.transaction": crate::sql::Transaction,
        },
    });
}

pub(super) fn add_to_linker(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    sql::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)?;
    Ok(())
}

type SqlResult<T> = wasmtime::Result<Result<T, Error>>;

interface_conversions!(sql);

/// The bounds of a statement the current invocation runs.
fn bounds(state: &InstanceState) -> Bounds {
    Bounds::of_invocation(state)
}

/// `call` on database `store`, in a span when tracing.
async fn traced<T>(
    operation: &'static str,
    store: &super::SqlStore,
    call: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    crate::traced::call(operation, "sql", store.name(), call).await
}

impl sql::Host for InstanceState {}

impl sql::HostConnection for InstanceState {
    async fn open(&mut self, name: String) -> SqlResult<Resource<Connection>> {
        match crate::stores::granted::<Sql>(self, &name) {
            Ok(store) => Ok(Ok(self.table().push(Connection { store })?)),
            Err(()) => Ok(Err(Error::NoSuchDatabase(name))),
        }
    }

    async fn query(
        &mut self,
        c: Resource<Connection>,
        statement: String,
        params: Vec<Value>,
    ) -> SqlResult<sql::RowSet> {
        let store = self.table().get(&c)?.store.clone();
        let params: Vec<SqlValue> = params.into_iter().map(to_value).collect();
        let bounds = bounds(self);
        Ok(outcome(
            traced(
                "sql query",
                &store,
                store.backend().query(&statement, &params, bounds),
            )
            .await,
        ))
    }

    async fn execute_batch(
        &mut self,
        c: Resource<Connection>,
        statements: String,
    ) -> SqlResult<()> {
        let store = self.table().get(&c)?.store.clone();
        let bounds = bounds(self);
        Ok(traced(
            "sql execute-batch",
            &store,
            store.backend().execute_batch(&statements, bounds),
        )
        .await
        .map_err(to_error))
    }

    async fn begin(&mut self, c: Resource<Connection>) -> SqlResult<Resource<Transaction>> {
        let store = self.table().get(&c)?.store.clone();
        let bounds = bounds(self);
        match traced("sql begin", &store, store.backend().begin(bounds)).await {
            Ok(tx) => Ok(Ok(self.table().push(Transaction {
                tx: Some(tx),
                store,
            })?)),
            Err(e) => Ok(Err(to_error(e))),
        }
    }

    async fn drop(&mut self, c: Resource<Connection>) -> wasmtime::Result<()> {
        self.table().delete(c)?;
        Ok(())
    }
}

impl sql::HostTransaction for InstanceState {
    async fn query(
        &mut self,
        t: Resource<Transaction>,
        statement: String,
        params: Vec<Value>,
    ) -> SqlResult<sql::RowSet> {
        let params: Vec<SqlValue> = params.into_iter().map(to_value).collect();
        let bounds = bounds(self);
        let transaction = self.table().get_mut(&t)?;
        let store = transaction.store.clone();
        let Some(tx) = transaction.tx.as_mut() else {
            return Ok(Err(Error::Other(
                "the transaction is already finished".into(),
            )));
        };
        Ok(outcome(
            traced("sql query", &store, tx.query(&statement, &params, bounds)).await,
        ))
    }

    async fn commit(&mut self, t: Resource<Transaction>) -> SqlResult<()> {
        let mut transaction = self.table().delete(t)?;
        let Some(tx) = transaction.tx.take() else {
            return Ok(Err(Error::Other(
                "the transaction is already finished".into(),
            )));
        };
        Ok(traced("sql commit", &transaction.store, tx.commit())
            .await
            .map_err(to_error))
    }

    async fn rollback(&mut self, t: Resource<Transaction>) -> SqlResult<()> {
        let mut transaction = self.table().delete(t)?;
        let Some(tx) = transaction.tx.take() else {
            return Ok(Err(Error::Other(
                "the transaction is already finished".into(),
            )));
        };
        Ok(traced("sql rollback", &transaction.store, tx.rollback())
            .await
            .map_err(to_error))
    }

    async fn drop(&mut self, t: Resource<Transaction>) -> wasmtime::Result<()> {
        // Dropping the backend transaction rolls it back.
        self.table().delete(t)?;
        Ok(())
    }
}
