"""The job store's tables: jobs (training runs and searches), their progress steps and per-epoch evaluations,
and the team's accounts (users and their API tokens; worker/users.py).

A search (worker/search.py) is a job of kind `search` whose trials are training jobs pointing at it; its Optuna
study lives in Optuna's own tables in the same database."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


ACTIVE = (JobState.RUNNING, JobState.CANCELLING)  # a worker holds the job
WAITING = (JobState.QUEUED, JobState.INTERRUPTED)  # the job waits for a worker
FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite has no time zones), always read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class JobKind(StrEnum):
    TRAIN = "train"
    SEARCH = "search"


class Base(DeclarativeBase):
    pass


class Job(Base):
    """One training run as submitted, with its state machine, worker bookkeeping and results."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=JobKind.TRAIN, server_default=JobKind.TRAIN)
    # A search's trial: the search it belongs to, and the trial's number, settings and outcome (worker/search.py)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    trial: Mapped[dict | None] = mapped_column(JSON)
    # A search's own settings and findings: budget, methods, deadline, best trial, importances
    search: Mapped[dict | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    # Who made it (a user's name; None: the machine itself or the single admin login) and whether every user sees it
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The input snapshot: TrainConfig fields (data paths relative to the data directory) and where the data came from.
    spec: Mapped[dict] = mapped_column(JSON)
    data_source: Mapped[dict] = mapped_column(JSON)
    validation_source: Mapped[dict | None] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(16))
    base_model: Mapped[str] = mapped_column(String(500))
    batch_size: Mapped[int] = mapped_column(Integer)  # the one in use: halved after running out of GPU memory

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    progress: Mapped[float] = mapped_column(Float, default=0.0)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    phase: Mapped[str | None] = mapped_column(String(200))  # the set-up before the first step, e.g. tokenising
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    traceback: Mapped[str | None] = mapped_column(Text)

    adapter_dir: Mapped[str | None] = mapped_column(String(500))  # relative to the data directory
    labels: Mapped[list | None] = mapped_column(JSON)
    metrics: Mapped[dict | None] = mapped_column(JSON)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    samples_per_second: Mapped[float | None] = mapped_column(Float)
    data_report: Mapped[list | None] = mapped_column(JSON)

    steps: Mapped[list[JobStep]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                passive_deletes=True, order_by="JobStep.step")
    epochs: Mapped[list[JobEpoch]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                  passive_deletes=True, order_by="JobEpoch.epoch")
    evaluations: Mapped[list[Evaluation]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                         passive_deletes=True, order_by="Evaluation.created_at")


class JobStep(Base):
    """A progress report from the training loop (stored at most every few seconds, and at each epoch's end)."""

    __tablename__ = "job_steps"
    __table_args__ = (Index("ix_job_steps_job_step", "job_id", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    total_steps: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float] = mapped_column(Float)
    loss: Mapped[float] = mapped_column(Float)
    learning_rate: Mapped[float] = mapped_column(Float)
    samples_per_second: Mapped[float] = mapped_column(Float)
    eta_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="steps")


class JobEpoch(Base):
    """The validation metrics after one epoch (the learning curves)."""

    __tablename__ = "job_epochs"
    __table_args__ = (Index("ix_job_epochs_job_epoch", "job_id", "epoch", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    loss: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    macro_f1: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="epochs")


class Evaluation(Base):
    """One evaluation of a job's adapter on a labelled test file; its rows are in the job's review folder."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    file_name: Mapped[str] = mapped_column(String(500))
    fingerprint: Mapped[str] = mapped_column(String(80))
    rows: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)
    macro_f1: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict] = mapped_column(JSON)
    calibration: Mapped[dict] = mapped_column(JSON)
    columns: Mapped[dict] = mapped_column(JSON)  # text, pair and label columns read
    owner: Mapped[str | None] = mapped_column(String(64))  # who ran it (None: the machine or the single admin)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="evaluations")


class User(Base):
    """An account: logs in to the page with its password (an argon2 hash), scripts use its API tokens."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                  passive_deletes=True)


class ApiToken(Base):
    """A token for scripts, `al_<id>_<secret>`: the id is public (lists, revoking), only the secret's SHA-256 is
    kept (a random 256-bit secret needs no slow hash; passwords do)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")
