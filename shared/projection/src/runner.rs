//! The projection runner: many projections side by side, each in its own
//! task, each catching up from its persisted checkpoint (with the
//! [`replay`](crate::replay) utility) and then following `$all` live with
//! its filter. Every batch is committed with the checkpoint in one
//! transaction. A failing projection stops alone, says which event and why,
//! and waits for an operator to restart or rebuild it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tongban_store::{
    Direction, EventFilter, EventStore, Position, ReadFrom, RecordedEvent, StoreError,
    SubscribeFrom, SubscriptionMessage,
};
use tracing::Instrument;

use crate::error::ProjectionError;
use crate::feed::Feed;
use crate::projection::Projection;
use crate::read_model::{validate_namespace, Checkpoint, ReadModelStore, ReadModels};
use crate::replay::{apply_batch, prepare, replay};

/// How the runner works.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Events per batch (one read-model transaction each).
    pub batch_size: usize,
    /// Change records a live feed consumer may fall behind before it is
    /// dropped.
    pub feed_buffer: usize,
    /// Wait before retrying after the event store failed.
    pub retry_delay: Duration,
    /// How long a checkpoint that only skipped filtered-out events may wait
    /// before it is written.
    pub checkpoint_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            feed_buffer: 4096,
            retry_delay: Duration::from_millis(500),
            checkpoint_interval: Duration::from_millis(250),
        }
    }
}

/// Where a projection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Replaying history towards the head.
    CatchingUp,
    /// Caught up; applying events as they are committed.
    Live,
    /// Stopped on an error; waits for a restart or a rebuild.
    Failed {
        /// The event it failed on, if an event was at fault.
        position: Option<Position>,
        stream: Option<String>,
        event_type: Option<String>,
        error: String,
    },
    /// The runner shut down.
    Stopped,
}

/// A projection's status, as an operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: u32,
    pub state: RunState,
    /// The last log position applied (committed).
    pub position: Option<Position>,
    pub events_applied: u64,
    /// Log positions between the checkpoint and the head.
    pub events_behind: u64,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub seconds_behind: f64,
}

#[derive(Clone, Debug)]
struct Progress {
    state: RunState,
    checkpoint: Checkpoint,
}

#[derive(Debug)]
enum Control {
    Rebuild,
    Restart,
}

struct Running {
    projection: Arc<dyn Projection>,
    progress: watch::Receiver<Progress>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    feed: Feed,
    models: ReadModels,
}

/// Runs projections against one event store and one read-model store.
pub struct ProjectionRunner {
    events: Arc<dyn EventStore>,
    models: Arc<dyn ReadModelStore>,
    config: RunnerConfig,
    running: Mutex<BTreeMap<String, Running>>,
    shutdown: watch::Sender<bool>,
}

impl ProjectionRunner {
    pub fn new(
        events: Arc<dyn EventStore>,
        models: Arc<dyn ReadModelStore>,
        config: RunnerConfig,
    ) -> Self {
        Self {
            events,
            models,
            config,
            running: Mutex::new(BTreeMap::new()),
            shutdown: watch::channel(false).0,
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<String, Running>>, ProjectionError> {
        self.running.lock().map_err(|_| ProjectionError::ShutDown)
    }

    /// Starts `projection` in its own task. Must be called within a Tokio
    /// runtime.
    pub fn start(&self, projection: Arc<dyn Projection>) -> Result<(), ProjectionError> {
        let name = projection.name().to_string();
        validate_namespace(&name)?;
        let mut running = self.lock()?;
        if running.contains_key(&name) {
            return Err(ProjectionError::InvalidInput {
                field: "projection name".into(),
                rule: format!("a projection named '{name}' is already running"),
            });
        }
        let models = ReadModels::new(self.models.clone(), name.clone());
        let feed = Feed::new(&name, models.clone(), self.config.feed_buffer);
        let (progress_tx, progress) = watch::channel(Progress {
            state: RunState::CatchingUp,
            checkpoint: Checkpoint::empty(projection.version()),
        });
        let (control, control_rx) = mpsc::channel(8);
        let worker = Worker {
            events: self.events.clone(),
            projection: projection.clone(),
            models: models.clone(),
            feed: feed.clone(),
            config: self.config.clone(),
            progress: progress_tx,
            control: control_rx,
            shutdown: self.shutdown.subscribe(),
        };
        let span = tracing::info_span!("projection", name = %name, version = projection.version());
        let task = tokio::spawn(worker.run().instrument(span));
        running.insert(
            name,
            Running {
                projection,
                progress,
                control,
                task,
                feed,
                models,
            },
        );
        Ok(())
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&Running) -> T) -> Result<T, ProjectionError> {
        let running = self.lock()?;
        running
            .get(name)
            .map(f)
            .ok_or_else(|| ProjectionError::UnknownProjection {
                name: name.to_string(),
            })
    }

    /// The names of the running projections.
    pub fn names(&self) -> Result<Vec<String>, ProjectionError> {
        Ok(self.lock()?.keys().cloned().collect())
    }

    /// Read access to a projection's read model.
    pub fn read_models(&self, name: &str) -> Result<ReadModels, ProjectionError> {
        self.with(name, |r| r.models.clone())
    }

    /// A projection's change feed.
    pub fn feed(&self, name: &str) -> Result<Feed, ProjectionError> {
        self.with(name, |r| r.feed.clone())
    }

    /// Asks a projection to drop its read model and rebuild it from zero.
    pub async fn rebuild(&self, name: &str) -> Result<(), ProjectionError> {
        let control = self.with(name, |r| r.control.clone())?;
        control
            .send(Control::Rebuild)
            .await
            .map_err(|_| ProjectionError::ShutDown)
    }

    /// Asks a failed projection to try again from its checkpoint.
    pub async fn restart(&self, name: &str) -> Result<(), ProjectionError> {
        let control = self.with(name, |r| r.control.clone())?;
        control
            .send(Control::Restart)
            .await
            .map_err(|_| ProjectionError::ShutDown)
    }

    /// A projection's status, measured against the current head.
    pub async fn status(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        let (progress, projection) = self.with(name, |r| {
            (r.progress.borrow().clone(), r.projection.clone())
        })?;
        let head = self.events.head().await?.map(|h| h.position);
        let position = progress.checkpoint.position;
        let events_behind = match (head, position) {
            (Some(h), Some(p)) => h.0.saturating_sub(p.0),
            (Some(h), None) => h.0 + 1,
            (None, _) => 0,
        };
        let seconds_behind = if events_behind == 0 {
            0.0
        } else {
            let from = position.map_or(ReadFrom::Start, |p| ReadFrom::At(p.next()));
            let oldest = self
                .events
                .read_all(Direction::Forwards, from, 1, &EventFilter::all())
                .await?;
            oldest.first().map_or(0.0, |e| {
                (OffsetDateTime::now_utc() - e.recorded_at)
                    .as_seconds_f64()
                    .max(0.0)
            })
        };
        Ok(ProjectionStatus {
            name: name.to_string(),
            version: projection.version(),
            state: progress.state,
            position,
            events_applied: progress.checkpoint.events_applied,
            events_behind,
            seconds_behind,
        })
    }

    /// Every projection's status.
    pub async fn statuses(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let mut out = Vec::new();
        for name in self.names()? {
            out.push(self.status(&name).await?);
        }
        Ok(out)
    }

    /// Waits until `name` has applied everything up to `position`. Fails
    /// at once if the projection fails, or after `timeout`.
    pub async fn wait_for(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let mut progress = self.with(name, |r| r.progress.clone())?;
        let wait = async {
            loop {
                {
                    let p = progress.borrow_and_update();
                    if p.checkpoint.position.is_some_and(|c| c >= position) {
                        return Ok(());
                    }
                    if let RunState::Failed { error, .. } = &p.state {
                        return Err(ProjectionError::InvalidInput {
                            field: "projection".into(),
                            rule: format!("'{name}' failed: {error}"),
                        });
                    }
                }
                if progress.changed().await.is_err() {
                    return Err(ProjectionError::ShutDown);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ProjectionError::Timeout {
                projection: name.to_string(),
                position: position.0,
                waited_ms: timeout.as_millis(),
            })?
    }

    /// Waits until every running projection has applied the current head.
    pub async fn wait_for_head(&self, timeout: Duration) -> Result<(), ProjectionError> {
        let Some(head) = self.events.head().await? else {
            return Ok(());
        };
        for name in self.names()? {
            self.wait_for(&name, head.position, timeout).await?;
        }
        Ok(())
    }

    /// Stops every projection after its current batch and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let running = match self.running.into_inner() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (name, r) in running {
            if let Err(e) = r.task.await {
                tracing::warn!(projection = %name, error = %e, "projection task ended badly");
            }
        }
    }
}

enum Exit {
    Shutdown,
    Rebuild,
    Restart,
}

struct Worker {
    events: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    models: ReadModels,
    feed: Feed,
    config: RunnerConfig,
    progress: watch::Sender<Progress>,
    control: mpsc::Receiver<Control>,
    shutdown: watch::Receiver<bool>,
}

/// Errors worth retrying: the event store was briefly unavailable.
fn is_transient(e: &ProjectionError) -> bool {
    matches!(
        e,
        ProjectionError::Store(
            StoreError::Unavailable { .. }
                | StoreError::SubscriptionDropped { .. }
                | StoreError::Io { .. }
        )
    )
}

impl Worker {
    async fn run(mut self) {
        let mut rebuild = false;
        loop {
            let outcome = self.session(rebuild).await;
            rebuild = false;
            let exit = match outcome {
                Ok(exit) => exit,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "event store unavailable; retrying");
                    match self.pause(Some(self.config.retry_delay)).await {
                        Some(exit) => exit,
                        None => Exit::Restart,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "projection failed; it stops until restarted or rebuilt");
                    let state = match &e {
                        ProjectionError::Apply {
                            position,
                            stream,
                            event_type,
                            ..
                        } => RunState::Failed {
                            position: Some(*position),
                            stream: Some(stream.clone()),
                            event_type: Some(event_type.clone()),
                            error: e.to_string(),
                        },
                        _ => RunState::Failed {
                            position: None,
                            stream: None,
                            event_type: None,
                            error: e.to_string(),
                        },
                    };
                    self.progress.send_modify(|p| p.state = state);
                    self.pause(None).await.unwrap_or(Exit::Shutdown)
                }
            };
            match exit {
                Exit::Shutdown => {
                    self.progress.send_modify(|p| p.state = RunState::Stopped);
                    return;
                }
                Exit::Rebuild => rebuild = true,
                Exit::Restart => {}
            }
        }
    }

    /// Waits for an operator (or `delay`); `None` when the delay passed.
    async fn pause(&mut self, delay: Option<Duration>) -> Option<Exit> {
        let sleep = async {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.shutdown.wait_for(|s| *s) => Some(Exit::Shutdown),
            c = self.control.recv() => Some(match c {
                Some(Control::Rebuild) => Exit::Rebuild,
                Some(Control::Restart) => Exit::Restart,
                None => Exit::Shutdown,
            }),
            () = sleep => None,
        }
    }

    fn poll_control(&mut self) -> Option<Exit> {
        if *self.shutdown.borrow() {
            return Some(Exit::Shutdown);
        }
        match self.control.try_recv() {
            Ok(Control::Rebuild) => Some(Exit::Rebuild),
            Ok(Control::Restart) => Some(Exit::Restart),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Exit::Shutdown),
        }
    }

    async fn session(&mut self, rebuild: bool) -> Result<Exit, ProjectionError> {
        let projection = self.projection.clone();
        let mut checkpoint = if rebuild {
            tracing::info!("rebuilding from zero on request");
            self.models
                .store()
                .reset(self.models.namespace(), projection.version())
                .await?;
            Checkpoint::empty(projection.version())
        } else {
            prepare(projection.as_ref(), &self.models).await?.0
        };
        self.progress.send_replace(Progress {
            state: RunState::CatchingUp,
            checkpoint,
        });

        if let Some(head) = self.events.head().await? {
            let started = Instant::now();
            let from = checkpoint.position;
            let mut stop = None;
            let events = self.events.clone();
            replay(
                events.as_ref(),
                projection.as_ref(),
                &self.models.clone(),
                &mut checkpoint,
                head.position,
                self.config.batch_size,
                |cp, published| {
                    self.feed.broadcast(published);
                    self.progress.send_modify(|p| p.checkpoint = *cp);
                    stop = self.poll_control();
                    if stop.is_some() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .await?;
            if let Some(exit) = stop {
                return Ok(exit);
            }
            tracing::info!(
                from = ?from,
                to = ?checkpoint.position,
                seconds = started.elapsed().as_secs_f64(),
                "caught up with the head it saw at start"
            );
        }
        self.follow(checkpoint).await
    }

    /// Follows `$all` live from the checkpoint.
    async fn follow(&mut self, mut checkpoint: Checkpoint) -> Result<Exit, ProjectionError> {
        let projection = self.projection.clone();
        let from = checkpoint
            .position
            .map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let mut subscription = self
            .events
            .subscribe_to_all(from, projection.filter())
            .ready_chunks(self.config.batch_size.max(1));
        // A scanned position not yet written (only filtered-out events).
        let mut unwritten: Option<Position> = None;
        let mut last_write = Instant::now();
        loop {
            let idle_write = async {
                match unwritten {
                    Some(_) => {
                        tokio::time::sleep(
                            self.config
                                .checkpoint_interval
                                .saturating_sub(last_write.elapsed()),
                        )
                        .await
                    }
                    None => std::future::pending().await,
                }
            };
            let chunk = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|s| *s) => return Ok(Exit::Shutdown),
                c = self.control.recv() => return Ok(match c {
                    Some(Control::Rebuild) => Exit::Rebuild,
                    Some(Control::Restart) => Exit::Restart,
                    None => Exit::Shutdown,
                }),
                () = idle_write => None,
                chunk = subscription.next() => Some(chunk),
            };
            let Some(chunk) = chunk else {
                if let Some(to) = unwritten.take() {
                    self.commit(&mut checkpoint, &[], to).await?;
                    last_write = Instant::now();
                }
                continue;
            };
            let Some(chunk) = chunk else {
                return Err(StoreError::Unavailable {
                    reason: "the subscription ended".into(),
                }
                .into());
            };
            let mut events: Vec<RecordedEvent> = Vec::new();
            let mut scanned = None;
            let mut caught_up = false;
            let mut failure = None;
            for message in chunk {
                match message {
                    Ok(SubscriptionMessage::Event(e)) => {
                        scanned = Some(e.position);
                        events.push(e);
                    }
                    Ok(SubscriptionMessage::Checkpoint(p)) => scanned = Some(p),
                    Ok(SubscriptionMessage::CaughtUp) => caught_up = true,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if let Some(to) = scanned {
                let due = last_write.elapsed() >= self.config.checkpoint_interval;
                if !events.is_empty() || due || caught_up {
                    self.commit(&mut checkpoint, &events, to).await?;
                    unwritten = None;
                    last_write = Instant::now();
                } else {
                    unwritten = Some(to);
                }
            }
            if caught_up {
                if let Some(to) = unwritten.take() {
                    self.commit(&mut checkpoint, &[], to).await?;
                }
                tracing::info!(position = ?checkpoint.position, "live");
                self.progress.send_modify(|p| p.state = RunState::Live);
            }
            if let Some(e) = failure {
                return Err(e.into());
            }
        }
    }

    async fn commit(
        &mut self,
        checkpoint: &mut Checkpoint,
        events: &[RecordedEvent],
        to: Position,
    ) -> Result<(), ProjectionError> {
        if checkpoint.position.is_some_and(|p| p >= to) {
            return Ok(());
        }
        let published = apply_batch(
            self.projection.as_ref(),
            &self.models,
            checkpoint,
            events,
            to,
        )
        .await?;
        self.feed.broadcast(published);
        self.progress.send_modify(|p| p.checkpoint = *checkpoint);
        Ok(())
    }
}
