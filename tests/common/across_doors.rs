// Included (not a module) by the scenario suites: `across_doors!`.

/// Generates, for each scenario, one test per (web door, app door) pair, on
/// one node and split over two nodes sharing Redis; and one test that runs
/// every scenario for every pair split over two nodes sharing a real Redis
/// Cluster (started once for the suite; each run has its own key prefix).
macro_rules! across_doors {
    ($($scenario:ident),* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_scenario_over_a_redis_cluster() {
            use signalgate_client::Door;
            let redis = crate::common::redis_cluster::RedisCluster::start().await;
            // Shared by every run of the suite, for the length of the test.
            let urls: &'static [String] = Vec::leak(redis.urls());
            let doors = [Door::Ws, Door::Grpc, Door::SocketIo];
            $(
                for web in doors {
                    for app in doors {
                        eprintln!("over a Redis Cluster: {} web {web:?} app {app:?}", stringify!($scenario));
                        $scenario(crate::common::cluster::Topology::RedisCluster(urls), web, app).await;
                    }
                }
            )*
            drop(redis);
        }
        $(
        mod $scenario {
            /// Web and app on one gateway.
            mod one_node {
                use signalgate_client::Door;
                use crate::common::cluster::Topology;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_ws_app_ws() { super::super::$scenario(Topology::Single, Door::Ws, Door::Ws).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_ws_app_grpc() { super::super::$scenario(Topology::Single, Door::Ws, Door::Grpc).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_grpc_app_ws() { super::super::$scenario(Topology::Single, Door::Grpc, Door::Ws).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_grpc_app_grpc() { super::super::$scenario(Topology::Single, Door::Grpc, Door::Grpc).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_socketio_app_ws() { super::super::$scenario(Topology::Single, Door::SocketIo, Door::Ws).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_socketio_app_grpc() { super::super::$scenario(Topology::Single, Door::SocketIo, Door::Grpc).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_socketio_app_socketio() { super::super::$scenario(Topology::Single, Door::SocketIo, Door::SocketIo).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_ws_app_socketio() { super::super::$scenario(Topology::Single, Door::Ws, Door::SocketIo).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_grpc_app_socketio() { super::super::$scenario(Topology::Single, Door::Grpc, Door::SocketIo).await }
            }
            /// Web and app on two gateways sharing Redis.
            mod two_nodes {
                use signalgate_client::Door;
                use crate::common::cluster::Topology;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_ws_app_ws() { super::super::$scenario(Topology::TwoNodes, Door::Ws, Door::Ws).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_ws_app_grpc() { super::super::$scenario(Topology::TwoNodes, Door::Ws, Door::Grpc).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_grpc_app_ws() { super::super::$scenario(Topology::TwoNodes, Door::Grpc, Door::Ws).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_grpc_app_grpc() { super::super::$scenario(Topology::TwoNodes, Door::Grpc, Door::Grpc).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_socketio_app_ws() { super::super::$scenario(Topology::TwoNodes, Door::SocketIo, Door::Ws).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_socketio_app_grpc() { super::super::$scenario(Topology::TwoNodes, Door::SocketIo, Door::Grpc).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_socketio_app_socketio() { super::super::$scenario(Topology::TwoNodes, Door::SocketIo, Door::SocketIo).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_ws_app_socketio() { super::super::$scenario(Topology::TwoNodes, Door::Ws, Door::SocketIo).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn web_grpc_app_socketio() { super::super::$scenario(Topology::TwoNodes, Door::Grpc, Door::SocketIo).await }
            }
        }
    )*};
}
