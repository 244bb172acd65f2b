"""SQLAlchemy models of the gateway's own bookkeeping."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class WorkspaceLinkRow(Base):
    """A workspace and the store it is linked to."""

    __tablename__ = "workspace_links"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    store: Mapped[str | None] = mapped_column(String(63))
    upstream_workspace: Mapped[str | None] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    default_artifact_root: Mapped[str] = mapped_column(Text, default="")
    managed_by: Mapped[str] = mapped_column(String(16))  # "config" or "api"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RunRouteRow(Base):
    """Which workspace a run lives in, so a call naming only a run id can be routed."""

    __tablename__ = "run_routes"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(63), index=True)
    experiment_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
