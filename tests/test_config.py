import pytest

from bench import config as config_mod
from bench.config import Config


def test_defaults_are_the_reference_tutorials():
    c = Config()
    settings = (c.seq_len, c.input_size, c.num_layers, c.hidden_size, c.lr, c.batch_size, c.epochs)
    assert settings == (28, 28, 2, 64, 1e-3, 50, 1)


def test_unknown_keys_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'hiden'; expected some of: backends"):
        config_mod.from_dict({"hiden": 3})


@pytest.mark.parametrize("key,value,message", [
    ("hidden_size", 0, "hidden_size must be a positive integer, got 0"),
    ("batch_size", -1, "batch_size must be a positive integer"),
    ("lr", 0, "lr must be a positive number"),
    ("seq_len", 27, "seq_len must divide 784"),
    ("dtype", "float64", "dtype must be one of"),
    ("device", "tpu", "device must be auto, cpu or cuda"),
    ("seeds", "a,b", "seeds must be integers"),
    ("sweep", {"width": [1]}, "unknown sweep axis 'width'"),
    ("sweep", {"batch_size": [32, 0]}, "batch_size must be a positive integer, got 0"),
])
def test_bad_values_are_rejected(key, value, message):
    with pytest.raises(ValueError, match=message):
        config_mod.from_dict({key: value})


def test_comma_lists_and_seq_len_set_the_input_width():
    c = config_mod.from_dict({"backends": "loop, gru", "seeds": "0,1,2", "seq_len": 56})
    assert c.backends == ("loop", "gru") and c.seeds == (0, 1, 2) and c.input_size == 14


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'hidden_size = 32\nbackends = ["loop"]\n[sweep]\nbatch_size = [16, 32]\n'),
    (".yaml", "hidden_size: 32\nbackends: [loop]\nsweep:\n  batch_size: [16, 32]\n"),
])
def test_config_files(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    c = config_mod.from_dict(config_mod.load_file(path))
    assert c.hidden_size == 32 and c.backends == ("loop",) and c.sweep == {"batch_size": [16, 32]}


def test_config_file_with_unknown_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("hidden = 32\n")
    with pytest.raises(ValueError, match="unknown key"):
        config_mod.from_dict(config_mod.load_file(path))


def test_to_dict_round_trips():
    c = config_mod.from_dict({"sweep": {"hidden_size": [8, 16]}, "seeds": [3]})
    saved = {k: v for k, v in c.to_dict().items() if k != "input_size"}
    assert config_mod.from_dict(saved) == c
