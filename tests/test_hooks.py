"""The hooks API, driven by hand-written training loops into a MemorySink."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paramdoctor import keys
from paramdoctor.errors import ConfigError, TrainingError
from paramdoctor.hooks import FanoutSink, MemorySink, NonFiniteLossError, TrainingMonitor


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.body(x)))


def make_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = TinyNet()
    optimizer = torch.optim.AdamW(
        [
            {"params": model.body.parameters(), "lr": 1e-3, "name": "body"},
            {"params": model.head.parameters(), "lr": 1e-2, "name": "head"},
        ]
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    batches = [(torch.randn(6, 4), torch.randint(0, 3, (6,))) for _ in range(5)]
    return model, optimizer, scheduler, batches


def test_hand_written_loop_records_every_series():
    model, optimizer, scheduler, batches = make_setup()
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model, telemetry_every_n_steps=3)
    monitor.before_fit()
    losses, lrs, clip_norms, manual_ratio = [], [], [], None
    for epoch in (1, 2):
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            returned = monitor.after_backward()
            clip_norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)))
            assert float(returned) == pytest.approx(clip_norms[-1], rel=1e-6)
            before = model.head.weight.detach().clone(), model.head.bias.detach().clone()
            optimizer.step()
            if monitor.step == 0:  # the first step is a telemetry step: compute its ratio by hand
                after = model.head.weight.detach(), model.head.bias.detach()
                diff = math.sqrt(sum(float((a - b).square().sum()) for a, b in zip(after, before)))
                base = math.sqrt(sum(float(b.square().sum()) for b in before))
                manual_ratio = diff / base
            monitor.after_step(loss)
            losses.append(float(loss.detach()))
            lrs.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
            optimizer.zero_grad()
            scheduler.step()
        monitor.after_epoch(epoch, {"train/loss": sum(losses[-5:]) / 5, "val/acc": torch.tensor(0.5), "val/loss": None})
    monitor.after_fit()

    assert monitor.step == 10
    assert sink.flushes == 1
    assert sink.steps(keys.STEP_LOSS) == list(range(1, 11))
    assert sink.values(keys.STEP_LOSS) == pytest.approx(losses)
    assert sink.values(keys.STEP_GRAD_NORM) == pytest.approx(clip_norms, rel=1e-6)
    assert monitor.last_grad_norm == pytest.approx(clip_norms[-1], rel=1e-6)
    # each group's LR is its own, and the one the step used (read before scheduler.step)
    assert sink.values(keys.step_lr("body")) == pytest.approx([b for b, _ in lrs])
    assert sink.values(keys.step_lr("head")) == pytest.approx([h for _, h in lrs])
    assert sink.values(keys.step_lr("head"))[0] == pytest.approx(1e-2)
    assert sink.values(keys.step_lr("body"))[1] == pytest.approx(1e-3 / 2)

    for group in ("body", "head"):
        drift = sink.metrics[keys.telemetry(group, keys.TELEMETRY_DRIFT)]
        assert [s for s, _ in drift] == [0, 1, 3, 6, 9]
        assert drift[0][1] == 0.0
        assert all(v > 0 for _, v in drift[1:])
        assert [v for _, v in drift[1:]] == sorted(v for _, v in drift[1:])  # moving away steadily
        for field in (keys.TELEMETRY_UPDATE_RATIO, keys.TELEMETRY_GRAD_NORM):
            series = sink.metrics[keys.telemetry(group, field)]
            assert [s for s, _ in series] == [1, 3, 6, 9]
            assert all(v > 0 and math.isfinite(v) for _, v in series)
    assert sink.values(keys.telemetry("head", keys.TELEMETRY_UPDATE_RATIO))[0] == pytest.approx(manual_ratio, rel=1e-5)
    # group grad norms add up (in squares) to the global norm at a telemetry step
    g_body = sink.values(keys.telemetry("body", keys.TELEMETRY_GRAD_NORM))[0]
    g_head = sink.values(keys.telemetry("head", keys.TELEMETRY_GRAD_NORM))[0]
    assert math.hypot(g_body, g_head) == pytest.approx(clip_norms[0], rel=1e-5)
    assert sink.metrics["train/loss"][0][0] == 1 and sink.metrics["val/acc"] == [(1, 0.5), (2, 0.5)]
    assert "val/loss" not in sink.metrics


def test_gradient_accumulation_calls_after_backward_once_per_step():
    model, optimizer, scheduler, batches = make_setup(seed=1)
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model, telemetry_every_n_steps=1)
    monitor.before_fit()
    norms = []
    for step_batches in (batches[0:2], batches[2:4]):
        step_loss = 0.0
        for x, y in step_batches:  # two micro-batches per optimizer step
            loss = nn.functional.cross_entropy(model(x), y) / len(step_batches)
            loss.backward()
            step_loss += float(loss.detach())
        monitor.after_backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)))  # clipping after: norm is pre-clip
        optimizer.step()
        monitor.after_step(step_loss)
        optimizer.zero_grad()
        scheduler.step()
    assert monitor.step == 2
    assert sink.steps(keys.STEP_LOSS) == [1, 2]
    assert sink.values(keys.STEP_GRAD_NORM) == pytest.approx(norms, rel=1e-6)
    assert min(norms) > 0.1  # so the recorded norm really is the one before clipping
    assert sink.steps(keys.telemetry("head", keys.TELEMETRY_UPDATE_RATIO)) == [1, 2]


def _run_steps(monitor, model, optimizer, batches, poison_at: int | None, poison_grad: bool = False, skip_poisoned=False):
    for i, (x, y) in enumerate(batches, start=1):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if i == poison_at:
            if poison_grad:
                model.head.weight.grad[0, 0] = float("inf")
            else:
                loss = loss * float("nan")
        monitor.after_backward()
        if not (skip_poisoned and i == poison_at):  # what GradScaler.step does on overflow
            optimizer.step()
        monitor.after_step(loss.detach())
        optimizer.zero_grad()


def test_nonfinite_loss_is_recorded_then_raised():
    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model)
    monitor.before_fit()
    with pytest.raises(NonFiniteLossError) as info:
        _run_steps(monitor, model, optimizer, batches, poison_at=3)
    assert isinstance(info.value, TrainingError)
    message = str(info.value)
    assert "step 3" in message and "nan" in message and "optimizer.lr" in message and "gradient_clip_val" in message
    assert "\n" not in message
    assert info.value.step == 3 and math.isnan(info.value.value)
    assert sink.steps(keys.STEP_LOSS) == [1, 2, 3]
    assert math.isnan(sink.values(keys.STEP_LOSS)[-1])


def test_nonfinite_grad_norm_raises_and_record_mode_only_records():
    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model)
    with pytest.raises(NonFiniteLossError, match="step 2"):
        _run_steps(monitor, model, optimizer, batches, poison_at=2, poison_grad=True)
    assert math.isinf(sink.values(keys.STEP_GRAD_NORM)[-1])

    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model, on_nonfinite="record")
    _run_steps(monitor, model, optimizer, batches, poison_at=2)
    assert monitor.step == 5
    assert math.isnan(sink.values(keys.STEP_LOSS)[1])


def test_nonfinite_on_an_unlogged_step_is_caught_at_the_next_logged_step():
    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model, log_every_n_steps=4, telemetry_every_n_steps=100)
    with pytest.raises(NonFiniteLossError, match="between optimizer steps 2 and 4"):
        _run_steps(monitor, model, optimizer, batches, poison_at=2)
    assert sink.steps(keys.STEP_LOSS) == [1, 4]


def test_grad_scaler_overflow_is_a_skipped_step_not_an_error():
    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    scaler = torch.amp.GradScaler("cpu")
    monitor = TrainingMonitor(optimizer, sink, model=model, grad_scaler=scaler, telemetry_every_n_steps=2)
    _run_steps(monitor, model, optimizer, batches, poison_at=2, poison_grad=True, skip_poisoned=True)
    assert monitor.step == 5
    assert sink.steps(keys.STEP_GRAD_NORM) == [1, 3, 4, 5]
    assert sink.steps(keys.telemetry("head", keys.TELEMETRY_UPDATE_RATIO)) == [1, 4]


def test_frozen_group_gets_drift_but_no_gradient_telemetry():
    model, optimizer, _, batches = make_setup()
    model.body.requires_grad_(False)
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model, telemetry_every_n_steps=1)
    monitor.before_fit()
    _run_steps(monitor, model, optimizer, batches[:2], poison_at=None)
    assert keys.telemetry("body", keys.TELEMETRY_GRAD_NORM) not in sink.metrics
    assert keys.telemetry("body", keys.TELEMETRY_UPDATE_RATIO) not in sink.metrics
    assert sink.values(keys.telemetry("body", keys.TELEMETRY_DRIFT)) == [0.0, 0.0, 0.0]
    assert sink.values(keys.telemetry("head", keys.TELEMETRY_DRIFT))[-1] > 0


def test_layer_groups_accept_named_pairs_and_params():
    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    groups = {"backbone.first": list(model.body.named_parameters()), "classifier": list(model.head.parameters())}
    monitor = TrainingMonitor(optimizer, sink, layer_groups=groups, telemetry_every_n_steps=1)
    _run_steps(monitor, model, optimizer, batches[:1], poison_at=None)
    assert list(monitor.layer_groups) == ["backbone.first", "classifier"]
    assert sink.steps(keys.telemetry("backbone.first", keys.TELEMETRY_UPDATE_RATIO)) == [1]
    assert sink.steps(keys.telemetry("backbone.first", keys.TELEMETRY_DRIFT)) == [0, 1]  # before_fit run lazily


def test_default_groups_and_names():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    unnamed = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5}], lr=0.1)
    monitor = TrainingMonitor(unnamed, MemorySink(), model=model)
    assert list(monitor.layer_groups) == ["0", "2"]
    assert monitor.group_names == ["group0", "group1"]
    # no model: the optimizer's groups, merged by name; shared names log one LR
    shared = torch.optim.SGD(
        [{"params": [model[0].weight], "name": "a"}, {"params": [model[0].bias], "name": "a", "lr": 9.0}], lr=0.1
    )
    sink = MemorySink()
    monitor = TrainingMonitor(shared, sink, group_names=None)
    assert list(monitor.layer_groups) == ["a"] and len(monitor.layer_groups["a"]) == 2
    model(torch.ones(1, 2)).sum().backward()
    monitor.after_backward()
    shared.step()
    monitor.after_step(1.0)
    assert sink.metrics[keys.step_lr("a")] == [(1, 0.1)]
    renamed = TrainingMonitor(unnamed, MemorySink(), group_names=["feat ures", "out"])
    assert renamed.group_names == ["feat ures", "out"]
    bare = TrainingMonitor(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), MemorySink(), model=nn.Linear(2, 2))
    assert list(bare.layer_groups) == []  # the model's params are not the optimizer's


def test_after_step_without_after_backward_still_records_the_grad_norm():
    model, optimizer, _, batches = make_setup()
    sink = MemorySink()
    monitor = TrainingMonitor(optimizer, sink, model=model, telemetry_every_n_steps=1)
    x, y = batches[0]
    nn.functional.cross_entropy(model(x), y).backward()
    expected = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
    optimizer.step()
    monitor.after_step(0.7)
    assert sink.values(keys.STEP_GRAD_NORM) == pytest.approx([expected])
    assert keys.telemetry("head", keys.TELEMETRY_UPDATE_RATIO) not in sink.metrics  # weights moved before the snapshot


def test_invalid_arguments_raise_config_errors():
    model, optimizer, _, _ = make_setup()
    with pytest.raises(ConfigError, match="both 'a' and 'b'"):
        TrainingMonitor(optimizer, MemorySink(), layer_groups={"a": model.body, "b": list(model.body.parameters())})
    with pytest.raises(ConfigError, match="2 param groups"):
        TrainingMonitor(optimizer, MemorySink(), group_names=["only-one"])
    with pytest.raises(ConfigError, match="on_nonfinite"):
        TrainingMonitor(optimizer, MemorySink(), on_nonfinite="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="log_every_n_steps"):
        TrainingMonitor(optimizer, MemorySink(), log_every_n_steps=0)
    with pytest.raises(ConfigError, match="layer_groups\\['x'\\]"):
        TrainingMonitor(optimizer, MemorySink(), layer_groups={"x": ["not a parameter"]})


def test_fanout_sink_sends_to_every_sink():
    first, second = MemorySink(), MemorySink()
    fan = FanoutSink(first, second)
    fan.log("val/acc", 0.5, 1)
    fan.flush()
    assert first.metrics == second.metrics == {"val/acc": [(1, 0.5)]}
    assert first.flushes == second.flushes == 1
    assert first.last("val/acc") == 0.5 and first.last("missing") is None


def test_default_groups_see_through_torch_compile_and_reject_batched_losses():
    model, optimizer, _, _ = make_setup()
    wrapped = torch.compile(model)  # not run: only the wrapper's structure matters here
    monitor = TrainingMonitor(optimizer, MemorySink(), model=wrapped)
    assert list(monitor.layer_groups) == ["body", "head"]
    with pytest.raises(ConfigError, match=r"shape \(6,\)"):
        monitor.after_step(torch.ones(6))
    assert monitor.step == 0
