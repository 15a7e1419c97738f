from paramdoctor import keys
from paramdoctor.engine import context
from paramdoctor.record import RunRecord


def _run(meta=None, tags=None, config=None) -> RunRecord:
    return RunRecord(series={}, meta=meta or {}, tags=tags or {}, config=config or {})


def test_train_samples_prefers_the_logged_count():
    assert context.train_samples_of(_run(meta={"train_samples": 50, "steps_per_epoch": 4})) == 50
    assert context.train_samples_of(_run(tags={keys.TAG_TRAIN_SAMPLES: "1437"})) == 1437


def test_train_samples_bounded_from_steps_batch_and_accumulation():
    config = {"data": {"batch_size": 16}, "trainer": {"accumulate_grad_batches": 2}}
    assert context.train_samples_of(_run(meta={"steps_per_epoch": 4}, config=config)) == 128
    hf = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4}
    assert context.train_samples_of(_run(tags={keys.TAG_STEPS_PER_EPOCH: "10"}, config=hf)) == 320


def test_train_samples_unknown_or_nonsense_is_none():
    assert context.train_samples_of(_run()) is None
    assert context.train_samples_of(_run(meta={"steps_per_epoch": 4})) is None  # no batch size
    assert context.train_samples_of(_run(meta={"train_samples": 0}, tags={keys.TAG_TRAIN_SAMPLES: "many"})) is None
    assert context.train_samples_of(_run(meta={"train_samples": True})) is None
