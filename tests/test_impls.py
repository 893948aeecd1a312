"""The registry and the contract's errors: each bad input is one clear message naming what was expected."""
import pytest
import torch

import impls


def test_names_and_families():
    assert impls.names() == ["cudnn", "loop", "triton", "triton-step", "gru", "compiled", "compiled-graphs", "aten"]
    assert {impls.spec(n).family for n in impls.names()} == {"lstm", "gru"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backend 'lsmt'; expected one of: cudnn, loop, triton, "
                                         r"triton-step, gru, compiled, compiled-graphs, aten$"):
        impls.build("lsmt", 28, 64)


@pytest.mark.parametrize("name", ["cudnn", "loop", "gru"])
def test_build_returns_batch_first_modules_of_the_right_kind(name):
    module = impls.build(name, 28, 64, 2)
    assert module.batch_first
    out, state = module(torch.randn(3, 5, 28))
    assert out.shape == (3, 5, 64)
    if impls.spec(name).family == "lstm":
        h, c = state
        assert h.shape == c.shape == (2, 3, 64)
        assert sorted(module.state_dict()) == sorted(torch.nn.LSTM(28, 64, 2).state_dict())
    else:
        assert state.shape == (2, 3, 64)


@pytest.mark.parametrize("name", ["cudnn", "loop", "gru", "triton", "triton-step"])
@pytest.mark.parametrize("bad", [dict(hidden_size=0), dict(hidden_size=-3), dict(input_size=0), dict(num_layers=0),
                                 dict(hidden_size=2.5)])
def test_non_positive_sizes_are_rejected(name, bad):
    args = dict(input_size=5, hidden_size=4, num_layers=1) | bad
    key = next(iter(bad))
    with pytest.raises(ValueError, match=rf"{key} must be a positive int, got {bad[key]!r}"):
        impls.build(name, **args)


@pytest.mark.parametrize("name", ["cudnn", "loop", "gru"])
def test_wrong_rank_names_the_expected_layout(name):
    module = impls.build(name, 5, 4)
    with pytest.raises(ValueError, match=r"input must be 3-D \(B, T, D\) or unbatched 2-D \(T, D\) with D=5, got 4-D"):
        module(torch.randn(2, 3, 4, 5))


@pytest.mark.parametrize("name", ["cudnn", "loop", "gru"])
def test_wrong_feature_size_names_the_expected_size(name):
    module = impls.build(name, 5, 4)
    with pytest.raises(ValueError, match=r"input must have D=5 features .* got shape \(2, 3, 6\)"):
        module(torch.randn(2, 3, 6))


@pytest.mark.parametrize("name", ["cudnn", "loop"])
def test_wrong_state_shape_names_the_expected_shape(name):
    module = impls.build(name, 5, 4, 3)
    good = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(dirs\*L, B, H_out\) = \(3, 2, 4\), got \(1, 2, 4\)"):
        module(torch.randn(2, 7, 5), (torch.zeros(1, 2, 4), good))
    with pytest.raises(ValueError, match=r"c_0 must have shape \(dirs\*L, B, H\) = \(3, 2, 4\), got \(3, 2, 5\)"):
        module(torch.randn(2, 7, 5), (good, torch.zeros(3, 2, 5)))
    with pytest.raises(ValueError, match=r"initial state must be a tuple \(h_0, c_0\)"):
        module(torch.randn(2, 7, 5), good)


def test_gru_state_shape_is_checked():
    module = impls.build("gru", 5, 4, 2)
    with pytest.raises(ValueError, match=r"h_0 must have shape \(dirs\*L, B, H\) = \(2, 3, 4\), got \(2, 4, 4\)"):
        module(torch.randn(3, 7, 5), torch.zeros(2, 4, 4))


@pytest.mark.parametrize("name", ["cudnn", "loop", "aten", "compiled"])
def test_the_options_of_nn_lstm_are_validated_as_nn_lstm_means_them(name):
    with pytest.raises(ValueError,
                       match=r"proj_size must be an int in \[0, hidden_size=4\) \(0: no projection\), got 4$"):
        impls.build(name, 5, 4, proj_size=4)
    with pytest.raises(ValueError, match=r"proj_size must be an int in \[0, hidden_size=4\).*got -1$"):
        impls.build(name, 5, 4, proj_size=-1)
    with pytest.raises(ValueError, match=r"bidirectional must be True or False, got 'yes'$"):
        impls.build(name, 5, 4, bidirectional="yes")


def test_gru_has_no_projection():
    with pytest.raises(ValueError, match=r"^nn.GRU has no proj_size \(a projection is an LSTM option\)$"):
        impls.build("gru", 5, 4, proj_size=2)


def test_availability():
    for name in ("cudnn", "loop", "gru"):
        assert impls.availability(name, "cpu").ok
    for name in ("triton", "triton-step"):
        triton = impls.availability(name, "cpu")
        assert not triton.ok and "CUDA" in triton.reason
    assert "ATen" in impls.availability("cudnn", "cpu").reason
    with pytest.raises(ValueError, match="unknown backend"):
        impls.availability("nope")


def test_triton_under_interpreter_is_usable_for_tests_only(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for name in ("triton", "triton-step"):
        assert impls.availability(name, "cpu", purpose="test").ok
        assert not impls.availability(name, "cpu", purpose="bench").ok


def test_impls_never_imports_the_harness():
    import pathlib
    for path in pathlib.Path(impls.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import bench" not in text and "from bench" not in text, path.name
