//! The shared application state handed to every handler.

use std::sync::Arc;

use crate::audit::AuditSink;
use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::inventory::Sealer;
use crate::metrics::Metrics;
use crate::mux::Mux;
use crate::store::Store;

/// Everything a request may need. Shared maps hold handles, never logic.
pub struct App {
    pub cfg: Config,
    pub store: Store,
    pub limiter: LoginLimiter,
    pub sealer: Sealer,
    pub metrics: Arc<Metrics>,
    pub mux: Mux,
    /// Batched audit writer for hot paths.
    pub audit: AuditSink,
    /// Running jobs and the global job concurrency limit.
    pub jobs: crate::jobs::Jobs,
    /// The tool registry and its run counters.
    pub tools: crate::tools::Tools,
    /// Tool runs in flight and the stored execution history.
    pub executions: Arc<crate::tools::executions::Executions>,
    /// The one shared system-metrics sampler.
    pub stats: Arc<crate::stats::Sampler>,
    /// Servers' last statuses and the status poller's cached connections.
    pub apps: crate::apps::Poller,
}

impl App {
    /// Opens the data directory and builds the state. Call inside the Tokio runtime.
    pub fn open(cfg: Config) -> anyhow::Result<Arc<App>> {
        crate::store::prepare_data_dir(&cfg.data_dir)?;
        let store = Store::open(&cfg.data_dir)?;
        let sealer = Sealer::open_checked(&cfg.data_dir, &store)?;
        // Files an older version (or a restore) left readable by others are tightened.
        crate::store::tighten_data_dir(&cfg.data_dir)?;
        crate::pty::configure(&cfg.pty)?;
        let tools = crate::tools::Tools::new(cfg.tools.clone()).map_err(|e| anyhow::anyhow!(e))?;
        let metrics = Arc::new(Metrics::default());
        let max_events = cfg.audit.max_events;
        store.write_blocking(|tx| crate::audit::set_max_events(tx, max_events))?;
        let audit = AuditSink::start(store.clone());
        let executions = Arc::new(crate::tools::executions::Executions::new(
            store.clone(),
            audit.clone(),
            crate::tools::executions::Limits {
                output_bytes: cfg.tools.output_bytes,
                keep_count: cfg.tools.keep_count.max(1),
                keep_days: cfg.tools.keep_days.max(1),
            },
        ));
        Ok(Arc::new_cyclic(|weak| App {
            limiter: LoginLimiter::new(cfg.login_limit.clone()),
            mux: Mux::new(cfg.mux.clone(), metrics.clone(), weak.clone()),
            stats: Arc::new(crate::stats::Sampler::new(weak.clone())),
            jobs: crate::jobs::Jobs::new(&cfg.jobs, audit.clone(), metrics.clone()),
            audit,
            tools,
            executions,
            apps: crate::apps::Poller::new(&cfg.apps),
            cfg,
            store,
            sealer,
            metrics,
        }))
    }
}
