//! One connection type for a standalone server and a Cluster, both
//! reconnecting on their own.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::{ConfigError, Target};

/// A multiplexed connection: clones share it.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Timeouts of the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) response: Duration,
}

#[cfg(feature = "tls")]
fn install_tls_provider() {
    // Several providers may be compiled in by other crates; pick ring
    // explicitly (an error only means one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Conn {
    pub(crate) async fn open(target: &Target, t: Timeouts) -> Result<Self, ConfigError> {
        #[cfg(feature = "tls")]
        install_tls_provider();
        match target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(ConfigError::Connect)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t.connect))
                    .set_response_timeout(Some(t.response))
                    // Fail fast while the server is down; the next command
                    // starts a new attempt.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(200));
                let manager = ConnectionManager::new_with_config(client, config).await.map_err(ConfigError::Connect)?;
                Ok(Conn::Single(manager))
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(t.connect)
                    .response_timeout(t.response)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(200)
                    .build()
                    .map_err(ConfigError::Connect)?;
                let conn = client.get_async_connection().await.map_err(ConfigError::Connect)?;
                Ok(Conn::Cluster(conn))
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
