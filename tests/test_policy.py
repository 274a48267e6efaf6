import pytest

from stormwatch.detectors.policy import AlertPolicy, PolicyConfig


def run(policy, steps, warm=None):
    out = []
    for i, (score, vol) in enumerate(steps):
        d = policy.step(i, score, vol, warming_up=bool(warm and i < warm))
        if d:
            out.append((i, *d))
    return out


CFG = PolicyConfig(threshold=0.99, clear=0.5, critical=0.9999, min_volume=10, persist=3,
                   clear_buckets=3, cooldown=5)


def test_needs_persistence_and_volume():
    p = AlertPolicy(CFG)
    assert run(p, [(0.995, 50)] * 2 + [(0.1, 50)] + [(0.995, 5)] * 5) == []
    p = AlertPolicy(CFG)
    assert run(p, [(0.995, 50)] * 3) == [(2, "open", "warning", 0)]


def test_no_alert_while_warming_up():
    p = AlertPolicy(CFG)
    assert run(p, [(0.999, 50)] * 6, warm=6) == []
    p = AlertPolicy(CFG)
    assert run(p, [(0.999, 50)] * 9, warm=6) == [(8, "open", "warning", 6)]


def test_hysteresis_escalation_resolve_and_cooldown():
    p = AlertPolicy(CFG)
    steps = ([(0.995, 50)] * 3 + [(0.7, 50)] * 4  # between clear and threshold: stays open
             + [(0.99999, 90)] + [(0.2, 5)] * 3  # escalates, then resolves
             + [(0.995, 50)] * 7)  # a new run opens only once the 5-bucket cooldown is over
    assert run(p, steps) == [(2, "open", "warning", 0), (7, "escalate", "critical", 0),
                             (10, "resolve", "critical", 0), (15, "open", "warning", 11)]


def test_state_round_trip():
    p = AlertPolicy(CFG)
    steps = [(0.995, 50)] * 4 + [(0.2, 1)] * 2
    run(p, steps)
    q = AlertPolicy.from_state(p.state_dict())
    assert q.state_dict() == p.state_dict()
    assert q.step(6, 0.2, 1, False) == ("resolve", "warning", 0)


@pytest.mark.parametrize("kw", [{"threshold": 0.5, "clear": 0.9}, {"persist": 0}, {"min_volume": -1},
                                {"critical": 0.5}])
def test_bad_config_is_rejected(kw):
    with pytest.raises(ValueError):
        PolicyConfig(**kw)
