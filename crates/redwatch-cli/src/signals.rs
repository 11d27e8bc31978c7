//! SIGINT and SIGTERM, handled alike by every subcommand: `docker stop`, Kubernetes and `timeout`
//! send SIGTERM, a terminal sends SIGINT.

use anyhow::Context;

/// The SIGINT and SIGTERM handlers, installed up front so that no signal is missed.
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub async fn recv(&mut self) -> anyhow::Result<&'static str> {
        #[cfg(unix)]
        {
            let Self {
                interrupt,
                terminate,
            } = self;
            tokio::select! {
                _ = interrupt.recv() => Ok("SIGINT"),
                _ = terminate.recv() => Ok("SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .context("cannot handle Ctrl-C")?;
            Ok("Ctrl-C")
        }
    }
}
