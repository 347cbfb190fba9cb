//! The test suite shared by the server-backed SQL stores, as a macro.

/// The tests every server-backed SQL store runs, against its real server.
#[macro_export]
macro_rules! sql_store_tests {
    (
        store: $store:ident,
        pool: $pool:ty,
        options: $options:ty,
        url: $url:path,
        url_in: $url_in:path,
        server: $server:literal,
        upstream: $upstream:literal,
        unreachable: $unreachable:literal,
        bulk_insert: $bulk_insert:literal,
        set_data: $set_data:literal,
        marks: $marks:literal,
        make_stale: $make_stale:literal,
        rename_row: $rename_row:literal,
        create_namespace: $create_namespace:literal,
        drop_namespace: $drop_namespace:literal $(,)?
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

        /// A new table name of its own (dropped with `drop_tables`), or `None` when the
        /// server is unreachable (reported by `pool`).
        async fn fresh_table() -> Option<($pool, Tables, String)> {
            let pool = pool().await?;
            let tables = Tables::default();
            let table = tables.add();
            Some((pool, tables, table))
        }

        /// A store on a new table of its own, as `fresh_table`.
        async fn fresh_store() -> Option<($pool, Tables, $store)> {
            let (pool, tables, table) = fresh_table().await?;
            let store = store_on(&pool, &table).await;
            Some((pool, tables, store))
        }

        async fn drop_tables(pool: &$pool, tables: &Tables) {
            for table in tables.names() {
                sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }

        /// `part` of the conformance suite, each store on a new table.
        async fn on_new_tables(part: cloakroom::testing::SuitePart) {
            let Some(pool) = pool().await else { return };
            let tables = Tables::default();
            let stores = cloakroom::testing::NumberedStores::new(|_| {
                let (pool, table) = (pool.clone(), tables.add());
                async move { store_on(&pool, &table).await }
            });
            stores.run(part, &cloakroom_actix::testing::frameworks()).await;
            drop_tables(&pool, &tables).await;
        }

        cloakroom::store_conformance_tests!(sql_store, on_new_tables);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn two_app_instances_share_one_table() {
            let Some((pool, tables, table)) = fresh_table().await else { return };
            let a = store_on(&pool, &table).await;
            let other_pool = $store::pool_options().connect(&$url()).await.unwrap();
            let b = store_on(&other_pool, &table).await;
            scenarios::two_instances_lose_no_updates(a, b).await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn outage_gives_typed_errors_then_recovers() {
            let Some((pool, tables, table)) = fresh_table().await else { return };
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

        /// A fresh table holding 200,000 expired rows, and a store on it whose operations
        /// time out after `timeout`.
        async fn bulk_table(timeout: Duration) -> Option<($pool, Tables, String, $store)> {
            let (pool, tables, table) = fresh_table().await?;
            let store = store_on(&pool, &table).await.with_operation_timeout(timeout);
            sqlx::query(&format!($bulk_insert, table = table))
                .execute(&pool)
                .await
                .unwrap();
            Some((pool, tables, table, store))
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn purges_200_000_expired_rows_in_batches() {
            let Some((pool, tables, _, store)) = bulk_table(Duration::from_secs(60)).await else {
                return;
            };
            scenarios::purge_in_batches(&store, 200_000, 10_000).await;
            drop_tables(&pool, &tables).await;
        }

        /// Revoking a user's sessions finishes whatever their number: it deletes them in
        /// batches, each under its own operation timeout. One statement for all of them ran
        /// past the timeout, so the caller got a store error, and the count was lost,
        /// while the server went on to delete them anyway.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn revokes_200_000_sessions_of_one_user_in_batches() {
            use cloakroom::SessionStore as _;
            let Some((pool, tables, table, store)) = bulk_table(Duration::from_millis(400)).await
            else {
                return;
            };
            sqlx::query(&format!(
                "UPDATE {table} SET user_id = 'crowd', idle_deadline = NULL, expires_at = NULL"
            ))
            .execute(&pool)
            .await
            .unwrap();
            let first = cloakroom::ListQuery { limit: 1, ..Default::default() };
            let kept = store.list_sessions(&first).await.unwrap();
            let kept = &kept.first().expect("sessions were made").key;
            assert_eq!(
                store.delete_for_user("crowd", Some(kept)).await.unwrap(),
                199_999
            );
            let left = store.list_for_user("crowd").await.unwrap();
            assert_eq!(left.iter().map(|entry| entry.key).collect::<Vec<_>>(), vec![*kept]);
            drop_tables(&pool, &tables).await;
        }

        /// A session renamed while a revocation's batch waits for its row is revoked under
        /// its new key. On PostgreSQL the waiting batch re-checked the renamed row against
        /// the keys it had listed and skipped it, deleting none; the revocation stopped at
        /// that empty batch and the session survived "log out other devices".
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_session_renamed_during_a_revocation_batch_is_revoked() {
            use cloakroom::conformance::live_record;
            use cloakroom::SessionStore as _;
            let Some((pool, tables, store)) = fresh_store().await else { return };
            let table = &tables.names()[0];
            let [current, old, new] =
                [(); 3].map(|()| cloakroom::SessionId::generate().store_key());
            for key in [&current, &old] {
                store.insert(key, &live_record(Some("renamer"))).await.unwrap();
            }
            let mut rename = pool.begin().await.unwrap();
            sqlx::query(&format!($rename_row, table = table))
                .bind(new.as_bytes().as_slice())
                .bind(old.as_bytes().as_slice())
                .execute(&mut *rename)
                .await
                .unwrap();
            let revoke = tokio::spawn({
                let store = store.clone();
                async move { store.delete_for_user("renamer", Some(&current)).await }
            });
            // Long enough for the revocation's batch to list `old` and wait for its row.
            tokio::time::sleep(Duration::from_millis(300)).await;
            rename.commit().await.unwrap();
            assert_eq!(revoke.await.unwrap().unwrap(), 1);
            assert_eq!(store.load(&new).await.unwrap(), None, "the renamed session survived");
            assert!(store.load(&current).await.unwrap().is_some());
            drop_tables(&pool, &tables).await;
        }

        /// Renames racing "log out other devices", round after round: none survives.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn revoke_others_racing_renames_leaves_no_survivor() {
            let Some((pool, tables, store)) = fresh_store().await else { return };
            cloakroom::conformance::revoke_others_racing_renames(scenarios::shared(store), 200)
                .await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn migrate_is_idempotent_and_safe_concurrently() {
            let Some((pool, tables, table)) = fresh_table().await else { return };
            // One app server's migration of the table, started on its own task.
            let migrate = || {
                let store = $store::from_pool(pool.clone()).with_table(None, &table).unwrap();
                async move { store.migrate().await.is_ok() }
            };
            let (x, y) = scenarios::race_two_migrations(migrate(), migrate()).await;
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

        fresh_store_tests! {
            fast_app_clock_cannot_extend_a_session,
            user_ids_compare_exactly,
            lists_a_user_past_one_page,
        }

        #[tokio::test]
        async fn purge_marks_stay_put_and_stale_ones_are_mended() {
            let Some((pool, tables, store)) = fresh_store().await else { return };
            let table = &tables.names()[0];
            let (marks, make_stale) = (format!($marks, table = table), format!($make_stale, table = table));
            scenarios::purge_marks(
                &store,
                |key| {
                    let (pool, sql) = (pool.clone(), marks.clone());
                    async move { sqlx::query_as(&sql).bind(key).fetch_one(&pool).await.unwrap() }
                },
                |key| {
                    let (pool, sql) = (pool.clone(), make_stale.clone());
                    async move { sqlx::query(&sql).bind(key).execute(&pool).await.unwrap().rows_affected() }
                },
            )
            .await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test]
        async fn corrupt_rows_are_absent_and_skipped() {
            let Some((pool, tables, table)) = fresh_table().await else { return };
            let store = store_on(&pool, &table).await;
            let sql = format!($set_data, table = table);
            scenarios::corrupt_rows_are_absent_and_skipped(&store, |tag, data| {
                let (pool, sql) = (pool.clone(), sql.clone());
                async move {
                    let done = sqlx::query(&sql).bind(data).bind(tag).execute(&pool).await;
                    done.unwrap().rows_affected()
                }
            })
            .await;
            drop_tables(&pool, &tables).await;
        }

        #[tokio::test]
        async fn reserved_words_are_table_names() {
            let Some(pool) = pool().await else { return };
            let namespace = support::unique_table();
            sqlx::query(&format!($create_namespace, namespace = namespace))
                .execute(&pool)
                .await
                .unwrap();
            // Unqualified: after a `schema.` qualifier some servers take reserved words.
            let inside = $store::pool_options()
                .connect(&$url_in(&namespace))
                .await
                .unwrap();
            for name in ["user", "order", "Select"] {
                let store = $store::from_pool(inside.clone())
                    .with_table(None, name)
                    .unwrap();
                scenarios::table_migrates_and_works(name, &store).await;
            }
            inside.close().await;
            sqlx::query(&format!($drop_namespace, namespace = namespace))
                .execute(&pool)
                .await
                .unwrap();
        }

        #[tokio::test]
        async fn a_custom_table_is_checked_first_and_created_alone() {
            let Some(pool) = pool().await else { return };
            let error = $store::connect_with_table($unreachable, None, "no such; table")
                .await
                .unwrap_err();
            assert!(
                matches!(error, cloakroom_sqlx::SetupError::InvalidIdentifier(_)),
                "the name is checked before anything is connected or created: {error}"
            );
            let namespace = support::unique_table();
            sqlx::query(&format!($create_namespace, namespace = namespace))
                .execute(&pool)
                .await
                .unwrap();
            let store = $store::connect_with_table(&$url_in(&namespace), None, "user")
                .await
                .unwrap();
            scenarios::table_works(&store).await;
            store.pool().close().await;
            let (tables,): (i64,) = sqlx::query_as(&format!(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{namespace}'"
            ))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(tables, 1, "only the requested table was created");
            sqlx::query(&format!($drop_namespace, namespace = namespace))
                .execute(&pool)
                .await
                .unwrap();
        }

        /// `cargo test -p cloakroom-sqlx --test <db> -- --ignored --nocapture per_user`
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "a measurement: 100,000 sessions of one user"]
        async fn per_user_operations_at_100_000_sessions() {
            let Some((pool, tables, store)) = fresh_store().await else { return };
            scenarios::per_user_scale(store, 100_000, $server).await;
            drop_tables(&pool, &tables).await;
        }
    };
}

/// Tests that each run the scenario of their name on a fresh store of their own (see
/// `fresh_store` in `sql_store_tests!`), then drop its table.
#[macro_export]
macro_rules! fresh_store_tests {
    ($($scenario:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $scenario() {
            let Some((pool, tables, store)) = fresh_store().await else { return };
            scenarios::$scenario(&store).await;
            drop_tables(&pool, &tables).await;
        }
    )*};
}
