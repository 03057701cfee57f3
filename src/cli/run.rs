//! `scorestream run`: the processor itself, as one member of the consumer group, until
//! SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{error, info};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::{http, runtime, topology};

/// Runs until shutdown; logs the error chain and fails if the runtime stops on an error.
pub async fn command(config: Config) -> ExitCode {
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", crate::error_chain::display(e.chain()));
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM (Ctrl-C only where there are no Unix signals).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let processed = metrics.record_process_seconds.clone();
    if runtime::hooks::stall_from_env(move || processed.get_sample_count() > 0)
        .map_err(anyhow::Error::msg)?
    {
        tracing::warn!(
            "Test hook set: the processing thread stalls at a named point ({}).",
            runtime::hooks::STALL_ENV
        );
    }
    let parts = topology::Components::load(&config)?;
    let topology = topology::build_topology(&config, &parts, Some(metrics.clone()))?;
    let listener = http::bind(&config.http_addr).await?;
    let bound = listener.local_addr()?;
    let advertised = http::advertised_addr(&config, bound);
    let http = http::HttpContext::for_config(&config, metrics.clone(), parts.normalizer.clone())?;
    info!(addr = %bound, advertised = %advertised, webhook = http.webhook.is_some(), "HTTP listening (/metrics, /health, /ready, /instances, /customers, /leaderboards, /events).");
    http::spawn(listener, http::router(http.clone()));
    info!(application_id = %config.application_id, bootstrap = %config.bootstrap_servers, "Starting.");
    let handle = tokio::select! {
        h = runtime::start_with(&config, topology, metrics, Some(advertised)) => h?,
        _ = shutdown_signal() => { info!("Interrupted during start-up."); return Ok(()); }
    };
    http.serve_queries(
        Arc::new(handle.query()),
        Arc::new(topology::query::QuerySpec::new(
            &config.application_id,
            parts.rules.clone(),
        )),
    );
    http.started.store(true, Ordering::Relaxed);
    let flag = handle.shutdown_flag();
    let mut waiter = tokio::task::spawn_blocking(move || handle.join());
    tokio::select! {
        _ = shutdown_signal() => {
            info!("Shutdown requested; finishing in-flight work, committing and leaving the group.");
            flag.store(true, Ordering::Relaxed);
        }
        r = &mut waiter => {
            r??;
            return Ok(());
        }
    }
    waiter.await??;
    info!("Stopped.");
    Ok(())
}
