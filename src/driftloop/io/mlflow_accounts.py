"""The MLflow accounts of an authenticated stack (MLflow's ``basic-auth`` app), set up by its admin.

The stack's MLflow refuses anonymous requests and gives every signed-in user READ by default
(``default_permission = READ``). Two accounts are created from the stack's secrets:

- ``driftloop``: the loop's service account (the worker's flow runs; an operator's promote or rollback). MLflow
  gives the creator of an experiment or registered model MANAGE on it, so on a fresh stack this account owns
  everything it registers. Experiments and models that existed before authentication was turned on are granted
  to it here, so an upgraded stack keeps working.
- ``driftloop-reader``: read-only (a model server following the registry, dashboards, ``driftloop status``):
  it can read every model but cannot move an alias or tag a version.

Run with the admin's credentials in ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``. Idempotent: an
account that exists gets its password set again (so rotating a secret in .env and restarting takes effect).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.server.auth.client import AuthServiceClient

LOOP_ACCOUNT = "driftloop"
READER_ACCOUNT = "driftloop-reader"


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    owns_everything: bool  # granted MANAGE on every experiment and registered model that exists now


@dataclass(frozen=True)
class AccountsReport:
    created: tuple[str, ...]
    updated: tuple[str, ...]
    grants: int  # MANAGE grants added on resources that existed before (an upgraded stack)


def ensure_accounts(tracking_uri: str, accounts: Sequence[Account]) -> AccountsReport:
    """Create each account (or reset its password) and grant the owners what exists already."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(tracking_uri)
    created, updated = [], []
    for account in accounts:
        try:
            auth.create_user(account.username, account.password)
            created.append(account.username)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            auth.update_user_password(account.username, account.password)
            updated.append(account.username)
    owners = [account.username for account in accounts if account.owns_everything]
    grants = _grant_existing(tracking_uri, auth, owners) if owners else 0
    return AccountsReport(tuple(created), tuple(updated), grants)


def _grant_existing(tracking_uri: str, auth: AuthServiceClient, owners: Sequence[str]) -> int:
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.permissions import MANAGE, RESOURCE_TYPE_EXPERIMENT, RESOURCE_TYPE_REGISTERED_MODEL
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    resources = [
        (RESOURCE_TYPE_EXPERIMENT, experiment.experiment_id)
        for experiment in client.search_experiments(view_type=ViewType.ALL)
    ] + [(RESOURCE_TYPE_REGISTERED_MODEL, model.name) for model in client.search_registered_models()]
    added = 0
    for username in owners:
        for resource_type, resource_id in resources:
            try:
                auth.grant_user_permission(username, resource_type, resource_id, MANAGE.name)
                added += 1
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
    return added


def accounts_from_environment(environ: dict[str, str]) -> list[Account]:
    """The stack's two accounts, their passwords from ``MLFLOW_LOOP_PASSWORD`` and ``MLFLOW_READER_PASSWORD``."""
    missing = [name for name in ("MLFLOW_LOOP_PASSWORD", "MLFLOW_READER_PASSWORD") if not environ.get(name)]
    if missing:
        raise ValueError(f"{' and '.join(missing)} not set (see .env.example)")
    return [
        Account(LOOP_ACCOUNT, environ["MLFLOW_LOOP_PASSWORD"], owns_everything=True),
        Account(READER_ACCOUNT, environ["MLFLOW_READER_PASSWORD"], owns_everything=False),
    ]


def main() -> None:
    """The stack's ``mlflow-accounts`` one-shot: ``MLFLOW_TRACKING_URI`` and the admin's credentials from env."""
    try:
        accounts = accounts_from_environment(dict(os.environ))
    except ValueError as error:
        sys.exit(f"mlflow-accounts: {error}")
    report = ensure_accounts(os.environ["MLFLOW_TRACKING_URI"], accounts)
    print(  # noqa: T201 (a one-shot container's log)
        f"mlflow-accounts: created {', '.join(report.created) or 'none'}; "
        f"password set again for {', '.join(report.updated) or 'none'}; "
        f"{report.grants} grant(s) on what existed before authentication",
        flush=True,
    )
