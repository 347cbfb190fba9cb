//! The test suite shared by the server-backed SQL stores, as a macro.

/// The tests every server-backed SQL store runs, against its real server.
#[macro_export]
macro_rules! sql_store_tests {
    (
        store: $store:ident,
        pool: $pool:ty,
        options: $options:ty,
        url: $url:path,
        server: $server:literal,
        upstream: $upstream:literal,
        unreachable: $unreachable:literal,
        bulk_insert: $bulk_insert:literal $(,)?
    ) => {
        async fn pool() -> Option<$pool> {
            let url = $url();
            match $store::pool_options()
                .max_connections(20)
                .connect(&url)
                .await
            {
                Ok(pool) => Some(pool),
                Err(error) => {
                    support::unreachable($server, &url, &error);
                    None
                }
            }
        }

        async fn store_on(pool: &$pool, table: &str) -> $store {
            let store = $store::from_pool(pool.clone())
                .with_table(None, table)
                .unwrap();
            store.migrate().await.expect("migrate");
            store
        }

        async fn drop_tables(pool: &$pool, tables: &Tables) {
            for table in tables.names() {
                sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn store_passes_the_conformance_suite() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            cloakroom::conformance::run(|| {
                let (pool, table) = (pool.clone(), tables.add());
                async move { store_on(&pool, &table).await }
            })
            .await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn store_concurrency_twenty_rounds() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let cases: Vec<_> = cloakroom::conformance::cases()
                .into_iter()
                .filter(|case| case.name.contains("concurrent") || case.name.contains("racing"))
                .collect();
            cloakroom::conformance::run_cases(&cases, 20, || {
                let (pool, table) = (pool.clone(), tables.add());
                async move { store_on(&pool, &table).await }
            })
            .await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn two_app_instances_share_one_table() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let table = tables.add();
            let a = store_on(&pool, &table).await;
            let other_pool = $store::pool_options().connect(&$url()).await.unwrap();
            let b = store_on(&other_pool, &table).await;
            scenarios::two_instances_lose_no_updates(a, b).await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn outage_gives_typed_errors_then_recovers() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let table = tables.add();
            store_on(&pool, &table).await;
            let proxy = Proxy::start($upstream.parse().unwrap()).await;
            let options: $options = $url().parse().unwrap();
            let options = options.host("127.0.0.1").port(proxy.addr.port());
            let proxied = $store::pool_options()
                .acquire_timeout(Duration::from_secs(1))
                .connect_with(options)
                .await
                .unwrap();
            let store = $store::from_pool(proxied)
                .with_table(None, &table)
                .unwrap()
                .with_operation_timeout(Duration::from_secs(2));
            scenarios::outage_and_recovery(store, &proxy).await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn purges_200_000_expired_rows_in_batches() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let table = tables.add();
            let store = store_on(&pool, &table)
                .await
                .with_operation_timeout(Duration::from_secs(60));
            sqlx::query(&format!($bulk_insert, table = table))
                .execute(&pool)
                .await
                .unwrap();
            scenarios::purge_in_batches(&store, 200_000, 10_000).await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test]
        async fn a_fast_app_clock_cannot_extend_a_session() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let store = store_on(&pool, &tables.add()).await;
            scenarios::fast_app_clock_cannot_extend_a_session(&store).await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn migrate_is_idempotent_and_safe_concurrently() {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let table = tables.add();
            let (a, b) = (pool.clone(), pool.clone());
            let (t1, t2) = (table.clone(), table.clone());
            let (x, y) = scenarios::race_two_migrations(
                async move {
                    $store::from_pool(a)
                        .with_table(None, &t1)
                        .unwrap()
                        .migrate()
                        .await
                        .is_ok()
                },
                async move {
                    $store::from_pool(b)
                        .with_table(None, &t2)
                        .unwrap()
                        .migrate()
                        .await
                        .is_ok()
                },
            )
            .await;
            assert!(x && y, "two app servers migrating at once both succeed");
            store_on(&pool, &table).await.migrate().await.unwrap();
            assert!($store::from_pool(pool.clone())
                .with_table(Some("bad schema"), "t")
                .is_err());
            assert!($store::from_pool(pool.clone())
                .with_table(None, "t; drop")
                .is_err());
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test]
        async fn an_unreachable_server_is_a_clear_setup_error() {
            let error = $store::connect($unreachable).await.unwrap_err();
            assert!(error.to_string().contains("check the URL"), "{error}");
        }
    };
}
