"""Experiments paramdoctor writes runs into are model-training experiments for MLflow 3; a kind someone set stays."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from paramdoctor import keys
from paramdoctor.importers.to_mlflow import log_record
from paramdoctor.record import RunRecord, Series
from paramdoctor.tracking import get_or_create_experiment, start_run
from paramdoctor.tracking.run import MODEL_TRAINING_KIND, TAG_EXPERIMENT_KIND, mark_model_training


def kind(client: MlflowClient, name: str) -> str | None:
    return client.get_experiment_by_name(name).tags.get(TAG_EXPERIMENT_KIND)


def test_the_tag_is_the_one_mlflows_ui_writes():
    """The name and value are MLflow's own: its UI bundle sets exactly this tag when a user picks the kind."""
    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    mains = sorted(bundle.glob("main.*.js"))
    if not mains:
        pytest.skip(f"no MLflow UI bundle under {bundle} (mlflow-skinny?)")
    text = mains[0].read_text(encoding="utf-8", errors="replace")
    assert f'CUSTOM_MODEL_DEVELOPMENT="{MODEL_TRAINING_KIND}"' in text
    assert f'"{TAG_EXPERIMENT_KIND}"' in text


def test_a_new_experiment_is_created_as_model_training(client):
    with start_run(experiment="fresh", client=client) as run:
        pass
    assert kind(client, "fresh") == MODEL_TRAINING_KIND
    assert client.get_experiment(run.experiment_id).name == "fresh"


def test_an_existing_experiment_without_a_kind_gets_it(client):
    client.create_experiment("made-elsewhere", tags={"team": "vision"})
    with start_run(experiment="made-elsewhere", client=client):
        pass
    tags = client.get_experiment_by_name("made-elsewhere").tags
    assert tags[TAG_EXPERIMENT_KIND] == MODEL_TRAINING_KIND and tags["team"] == "vision"


@pytest.mark.parametrize("chosen", ["genai_development", "finetuning"])
def test_a_kind_someone_set_is_never_overwritten(client, chosen):
    client.create_experiment("theirs", tags={TAG_EXPERIMENT_KIND: chosen})
    with start_run(experiment="theirs", client=client):
        pass
    assert kind(client, "theirs") == chosen
    assert mark_model_training(client, client.get_experiment_by_name("theirs")) is False


def test_marking_costs_no_write_once_the_kind_is_there(client):
    experiment_id = get_or_create_experiment(client, "once")
    assert get_or_create_experiment(client, "once") == experiment_id
    assert mark_model_training(client, client.get_experiment(experiment_id)) is False


class ReadOnlyTags(MlflowClient):
    """A real client whose experiment-tag writes are refused, as for a user without edit rights."""

    def set_experiment_tag(self, experiment_id, key, value):
        raise MlflowException("PERMISSION_DENIED: read-only experiment")


def test_a_refused_tag_write_costs_the_tag_not_the_run(mlflow_store):
    MlflowClient(tracking_uri=mlflow_store).create_experiment("shared")
    client = ReadOnlyTags(tracking_uri=mlflow_store)
    with start_run(experiment="shared", client=client) as run:
        run.sink.log(keys.VAL_LOSS, 0.5, 1)
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert kind(client, "shared") is None


def test_an_imported_run_lands_in_a_model_training_experiment(client, mlflow_store):
    record = RunRecord(series={keys.VAL_LOSS: Series([1, 2], [1.0, 0.9])}, params={"lr": "0.1"}, source="csv")
    log_record(record, experiment="imports", run_name="hf", client=client)
    assert kind(client, "imports") == MODEL_TRAINING_KIND
