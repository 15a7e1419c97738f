import pytest

from paramdoctor.config import TrainConfig, flatten, to_tree, validate
from paramdoctor.diagnosis import Evidence, Finding
from paramdoctor.engine import apply_patch, load_rules, prescribe
from paramdoctor.engine.schema import PatchItem
from paramdoctor.errors import RuleError
from paramdoctor.record import RunRecord

from tests.engine.test_schema import BASE
from paramdoctor.engine.schema import Rule

DEFAULTS = flatten(to_tree(TrainConfig()))


def item(**kw):
    return PatchItem(**{"reason": "r", **kw})


def test_patch_ops_and_clamps():
    assert apply_patch(item(key="optimizer.lr", op="multiply", value=0.1), DEFAULTS) == pytest.approx(1e-4)
    assert apply_patch(item(key="optimizer.lr", op="multiply", value=100, max=0.03), DEFAULTS) == 0.03
    assert apply_patch(item(key="optimizer.weight_decay", op="multiply", value=10, max=1e-3), DEFAULTS) == 1e-3
    assert apply_patch(item(key="model.dropout", op="add", value=0.2, max=0.5), DEFAULTS) == pytest.approx(0.2)
    assert apply_patch(item(key="scheduler.warmup_epochs", op="at_least", value=1), DEFAULTS) == 1.0
    assert apply_patch(item(key="early_stopping.patience", op="at_most", value=3), DEFAULTS) == 3
    assert apply_patch(item(key="data.augment", op="set", value=False), DEFAULTS) is False


def test_null_keys_and_fallbacks():
    assert apply_patch(item(key="trainer.gradient_clip_val", op="at_most", value=1.0), DEFAULTS) == 1.0
    unset = {**DEFAULTS, "optimizer.backbone_lr": None, "optimizer.weight_decay": None}
    # a null backbone LR is "auto": the head's LR from scratch, a tenth of it for pretrained weights
    assert apply_patch(item(key="optimizer.backbone_lr", op="multiply", value=0.1), unset) == pytest.approx(1e-4)
    pretrained = {**unset, "model.weights": "IMAGENET1K_V1"}
    assert apply_patch(item(key="optimizer.backbone_lr", op="multiply", value=0.1), pretrained) == pytest.approx(1e-5)
    # any other null key is left alone, unless a fallback key says where to start from
    assert apply_patch(item(key="optimizer.weight_decay", op="multiply", value=0.1), unset) is None
    fallback = item(key="optimizer.weight_decay", op="multiply", value=0.1, fallback_key="optimizer.lr")
    assert apply_patch(fallback, unset) == pytest.approx(1e-4)


def test_a_clamp_never_turns_a_raise_into_a_cut():
    high = {**DEFAULTS, "optimizer.lr": 0.05}
    assert apply_patch(item(key="optimizer.lr", op="multiply", value=10, max=0.03), high) == 0.05


def test_integer_keys_stay_integers():
    assert apply_patch(item(key="trainer.max_epochs", op="multiply", value=1.5), DEFAULTS) == 30
    assert isinstance(apply_patch(item(key="trainer.max_epochs", op="multiply", value=0.33), DEFAULTS), int)


def _rule(code, category, severity, patch, **extra):
    data = {**BASE, "code": code, "slug": f"r-{code.lower()}", "category": category, "severity": severity, "patch": patch, **extra}
    return Rule.model_validate(data)


def _finding(rule, **values):
    return Finding(rule.code, rule.slug, rule.category, rule.severity, rule.title, Evidence("m", values=values), "why", "fix")


def test_stability_wins_over_fitting_and_the_conflict_is_explained():
    raise_lr = _rule("PD920", "lr_too_low", "error", [{"key": "optimizer.lr", "op": "multiply", "value": 10, "reason": "up"}])
    cut_lr = _rule(
        "PD910",
        "diverged",
        "warning",
        [
            {"key": "optimizer.lr", "op": "multiply", "value": 0.1, "reason": "down"},
            {"key": "trainer.gradient_clip_val", "op": "set", "value": 1.0, "reason": "clip"},
        ],
    )
    # order of the findings does not matter: the stage does (even over severity)
    rx = prescribe([(raise_lr, _finding(raise_lr)), (cut_lr, _finding(cut_lr))], RunRecord(series={}))
    assert rx.patch == {"optimizer.lr": pytest.approx(1e-4), "trainer.gradient_clip_val": 1.0}
    assert [c.rule for c in rx.changes] == ["PD910", "PD910"]
    assert rx.changes[0].old == 1e-3 and rx.changes[0].reason == "down"
    assert rx.conflicts == [
        "PD910 (diverged) lowers optimizer.lr to 0.0001; PD920's raise to 0.01 was dropped: stability comes first"
    ]
    assert rx.next_config["optimizer"]["lr"] == pytest.approx(1e-4)
    validate(rx.next_config)


def test_within_a_stage_the_more_severe_finding_wins():
    a = _rule("PD930", "overfitting", "warning", [{"key": "optimizer.weight_decay", "op": "multiply", "value": 3, "reason": "a"}])
    b = _rule("PD931", "forgetting", "error", [{"key": "optimizer.weight_decay", "op": "multiply", "value": 10, "reason": "b"}])
    rx = prescribe([(a, _finding(a)), (b, _finding(b))], RunRecord(series={}))
    assert rx.patch["optimizer.weight_decay"] == pytest.approx(5e-3)
    assert "PD931 is more severe" in rx.conflicts[0]


def test_starts_from_the_run_config_or_base_config_and_clears_the_run_name():
    cut = _rule("PD910", "diverged", "error", [{"key": "optimizer.lr", "op": "multiply", "value": 0.5, "reason": "down"}])
    tree = to_tree(TrainConfig.model_validate({"optimizer": {"lr": 0.02}, "experiment": {"run_name": "first"}}))
    rx = prescribe([(cut, _finding(cut))], RunRecord(series={}, config=tree))
    assert rx.next_config["optimizer"]["lr"] == pytest.approx(0.01)
    assert rx.next_config["experiment"]["run_name"] is None
    rx = prescribe([(cut, _finding(cut))], RunRecord(series={}, config=tree), base_config={"optimizer": {"lr": 0.4}})
    assert rx.next_config["optimizer"]["lr"] == pytest.approx(0.2)
    foreign = RunRecord(series={}, config={"learning_rate": 5e-5, "per_device_train_batch_size": 8})
    assert prescribe([], foreign).next_config == {**to_tree(TrainConfig()), "experiment": {"name": "paramdoctor", "run_name": None}}


def test_no_change_is_recorded_when_the_value_is_already_right():
    aug = _rule("PD930", "overfitting", "error", [{"key": "data.augment", "op": "set", "value": True, "reason": "on"}])
    assert prescribe([(aug, _finding(aug))], RunRecord(series={})).changes == []


def test_a_patch_that_breaks_the_config_raises():
    bad = _rule("PD940", "undertrained", "error", [{"key": "scheduler.warmup_epochs", "op": "set", "value": 50.0, "reason": "x"}])
    with pytest.raises(RuleError, match="warmup_epochs.*PD940"):
        prescribe([(bad, _finding(bad))], RunRecord(series={}))


def test_every_builtin_patch_alone_gives_a_valid_config():
    for rule in load_rules():
        # an operand taken from the evidence gets a plausible measured value
        plausible = {"train_samples": 1000}
        measured = {item.value_from: plausible.get(item.value_from, 0.01) for item in rule.patch if item.value_from}
        rx = prescribe([(rule, _finding(rule, **measured))], RunRecord(series={}))
        validate(rx.next_config)
        # an evaluation mismatch on default settings is a pipeline bug: there may be nothing to change;
        # a warmup that never ends cannot come from the default config, which has none
        assert rx.changes or rule.category == "eval_mismatch" or rule.code == "PD207", (
            f"{rule.code} changes nothing on the default config"
        )


def test_value_from_takes_the_operand_from_the_evidence():
    decay = _rule(
        "PD950",
        "gradients",
        "error",
        [{"key": "optimizer.weight_decay", "op": "multiply", "value_from": "decay_factor", "reason": "pull"}],
        signal="weight_decay_pull",
        requires=[],
        params={"max_shrink": 0.01},
        when=[{"field": "shrink_per_step", "op": ">=", "param": "max_shrink"}],
        evidence="pull {shrink_per_step:.3g}",
        **{"for": None},
    )
    rx = prescribe([(decay, _finding(decay, decay_factor=0.001))], RunRecord(series={}))
    assert rx.next_config["optimizer"]["weight_decay"] == pytest.approx(5e-7)
    # a measurement that is missing or not finite changes nothing
    for missing in ({}, {"decay_factor": float("nan")}, {"decay_factor": "inf"}):
        assert prescribe([(decay, _finding(decay, **missing))], RunRecord(series={})).changes == []


def test_only_if_applies_an_item_for_the_matching_config_only():
    wd = _rule(
        "PD960",
        "overfitting",
        "warning",
        [
            {"key": "optimizer.weight_decay", "op": "at_least", "value": 0.05, "only_if": {"optimizer.name": "adamw"}, "reason": "a"},
            {"key": "optimizer.weight_decay", "op": "multiply", "value": 10, "max": 5e-3, "only_if": {"optimizer.name": ["sgd", "adam"]}, "reason": "b"},
        ],
    )
    adamw = RunRecord(series={}, config=to_tree(TrainConfig()))
    sgd = RunRecord(series={}, config=to_tree(TrainConfig.model_validate({"optimizer": {"name": "sgd"}})))
    assert prescribe([(wd, _finding(wd))], adamw).next_config["optimizer"]["weight_decay"] == 0.05
    [change] = prescribe([(wd, _finding(wd))], sgd).changes
    assert (change.new, change.reason) == (pytest.approx(5e-3), "b")


def test_items_of_one_rule_on_one_key_compose_in_order():
    longer = _rule(
        "PD970",
        "undertrained",
        "warning",
        [
            {"key": "trainer.max_epochs", "op": "multiply", "value": 2, "reason": "double"},
            {"key": "trainer.max_epochs", "op": "at_least", "value": 10, "reason": "at least ten"},
        ],
    )
    short = RunRecord(series={}, config=to_tree(TrainConfig.model_validate({"trainer": {"max_epochs": 3}})))
    long = RunRecord(series={}, config=to_tree(TrainConfig.model_validate({"trainer": {"max_epochs": 30}})))
    [change] = prescribe([(longer, _finding(longer))], short).changes
    assert (change.old, change.new) == (3, 10)
    assert prescribe([(longer, _finding(longer))], long).next_config["trainer"]["max_epochs"] == 60


def test_a_deferred_item_yields_to_any_other_finding_on_its_key():
    bigger_batch = _rule(
        "PD980",
        "undertrained",
        "warning",
        [
            {"key": "data.batch_size", "op": "multiply", "value": 8, "reason": "batch"},
            {"key": "optimizer.lr", "op": "multiply", "value": 2.83, "defer": True, "reason": "scale the LR with the batch"},
        ],
    )
    cut = _rule("PD990", "undertrained", "warning", [{"key": "optimizer.lr", "op": "multiply", "value": 0.3, "reason": "cut"}])
    alone = prescribe([(bigger_batch, _finding(bigger_batch))], RunRecord(series={}))
    assert alone.next_config["optimizer"]["lr"] == pytest.approx(2.83e-3)
    # PD980 comes first by code, but its LR change only accompanies the batch change
    both = prescribe([(bigger_batch, _finding(bigger_batch)), (cut, _finding(cut))], RunRecord(series={}))
    assert both.next_config["optimizer"]["lr"] == pytest.approx(3e-4)
    assert both.next_config["data"]["batch_size"] == 8 * TrainConfig().data.batch_size
    assert any("PD980's change of this key only accompanies its main fix" in c for c in both.conflicts)


def test_an_lr_too_high_finding_never_raises_the_learning_rate():
    # a raise, static or measured, is refused when the rule loads
    for patch in (
        {"key": "optimizer.lr", "op": "multiply", "value": 2, "reason": "up"},
        {"key": "optimizer.backbone_lr", "op": "at_least", "value": 1e-3, "reason": "up"},
        {"key": "optimizer.lr", "op": "multiply", "value_from": "rise", "reason": "measured"},
    ):
        with pytest.raises(ValueError, match="never raises the learning rate"):
            _rule("PD970", "lr_too_high", "warning", [patch])
    # the built-in ones: PD105 grows the batch and leaves the learning rate where it was
    pd105 = next(r for r in load_rules() if r.code == "PD105")
    rx = prescribe([(pd105, _finding(pd105, batch_growth=8.0))], RunRecord(series={}))
    assert rx.next_config["optimizer"]["lr"] == TrainConfig().optimizer.lr
    assert rx.next_config["data"]["batch_size"] == 8 * TrainConfig().data.batch_size


def test_one_learning_rate_change_per_prescription():
    # two findings that both cut the LR: the first owns both LRs, the second's cut does not stack
    first = _rule("PD960", "diverged", "critical", [
        {"key": "optimizer.lr", "op": "multiply", "value": 0.1, "reason": "cut"},
        {"key": "optimizer.backbone_lr", "op": "multiply", "value": 0.1, "reason": "cut"},
    ])
    second = _rule("PD961", "unstable", "warning", [{"key": "optimizer.backbone_lr", "op": "multiply", "value": 0.5, "reason": "halve"}])
    start = {**to_tree(TrainConfig()), "model": {**to_tree(TrainConfig())["model"], "weights": "IMAGENET1K_V1"}}
    rx = prescribe([(second, _finding(second)), (first, _finding(first))], RunRecord(series={}), base_config=start)
    assert rx.next_config["optimizer"]["lr"] == pytest.approx(1e-4)
    # auto backbone LR (a tenth of the head's for pretrained weights) follows the cut by itself: it stays null
    assert rx.next_config["optimizer"]["backbone_lr"] is None
    assert "optimizer.backbone_lr" not in rx.patch
    assert any("one learning-rate change per prescription" in c for c in rx.conflicts) or all(
        c.rule == "PD960" for c in rx.changes if c.key.startswith("optimizer.")
    )
    # a rule that changes only the backbone LR makes it explicit
    only_backbone = prescribe([(second, _finding(second))], RunRecord(series={}), base_config=start)
    assert only_backbone.next_config["optimizer"]["backbone_lr"] == pytest.approx(5e-5)


def test_a_capped_change_shows_the_factor_actually_applied():
    boost = _rule("PD950", "lr_too_low", "warning", [{"key": "optimizer.lr", "op": "multiply", "value": 100, "max": 0.03, "reason": "100x"}])
    (change,) = prescribe([(boost, _finding(boost))], RunRecord(series={})).changes
    assert change.new == 0.03 and change.factor == pytest.approx(30)
    assert change.note == "x30 applied (x100 capped at 0.03)"
