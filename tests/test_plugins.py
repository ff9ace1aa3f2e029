"""The hook interface: every hook, built-ins like externals, entry points, broken plugins."""

import logging
import sys
import textwrap

import numpy as np
import pytest

from sfx_cnn_veto import ConfigError, PluginError, hookimpl, manager
from sfx_cnn_veto.io.base import FrameSource
from sfx_cnn_veto.io.events import EventRef
from sfx_cnn_veto.io.store import FrameStore
from sfx_cnn_veto.types import (
    ArchitectureSpec,
    BackendSpec,
    CommandSpec,
    ConfigGroupSpec,
    LabelerSpec,
    ReaderSpec,
    SinkSpec,
    StepSpec,
)


class ConstSource(FrameSource):
    def __init__(self, path, options):
        self.path = path

    def events(self):
        return ["//0", "//1"]

    def frame_shape(self):
        return (8, 8)

    def read(self, event, region=None):
        frame = np.full((8, 8), float(EventRef(self.path, event).index))
        return frame if region is None else frame[region]


def test_builtins_are_registered_as_plugins(plugin_manager):
    names = [name for name, _, _ in manager.iter_plugins(plugin_manager)]
    assert names[: len(manager.BUILTIN_PLUGINS)] == list(manager.BUILTIN_PLUGINS)
    assert {"hdf5", "fabio"} <= set(manager.readers())
    assert "paper" in manager.architectures()
    assert "keras" in manager.backends()
    assert {"normalize:robust", "normalize:standardize", "crop:centre"} <= set(manager.preprocessing_steps())
    assert {"plugins", "models", "score"} <= set(manager.commands())


def test_reader_hook_and_file_patterns(register_plugin, tmp_path):
    class Plugin:
        @hookimpl
        def sfxveto_readers(self):
            return [ReaderSpec("const", ("*.const",), ConstSource)]

    register_plugin(Plugin(), "const-plugin")
    path = tmp_path / "x.const"
    path.write_text("")
    with FrameStore() as store:
        refs = store.expand(EventRef(str(path), None, str(path)))
        assert [r.event for r in refs] == ["//0", "//1"]
        assert store.read(refs[1])[0, 0] == 1.0


def test_select_reader_firstresult_wins(register_plugin, tmp_path):
    class Chooser:
        @hookimpl
        def sfxveto_select_reader(self, path, options):
            return "const" if path.endswith(".h5") else None

        @hookimpl
        def sfxveto_readers(self):
            return [ReaderSpec("const", (), ConstSource)]

    register_plugin(Chooser(), "chooser")
    path = tmp_path / "looks-like.h5"
    path.write_text("")
    with FrameStore() as store:
        assert store.read(EventRef(str(path), "//1", str(path)))[0, 0] == 1.0


def test_normalize_step_from_a_plugin_is_used_by_a_model(register_plugin, paper_model_file, tmp_path):
    from sfx_cnn_veto import Veto
    from sfx_cnn_veto.core.model import ModelMetadata, attach_metadata

    calls = []

    def clip(frame):
        calls.append(frame.shape)
        return np.clip(np.asarray(frame, np.float32), 0, 1)

    class Plugin:
        @hookimpl
        def sfxveto_preprocessing_steps(self):
            return [StepSpec("normalize", "clip01", clip)]

    register_plugin(Plugin(), "clip")
    path = tmp_path / "clip.keras"
    path.write_bytes(open(paper_model_file, "rb").read())
    attach_metadata(path, ModelMetadata(architecture="paper", input_shape=(350, 350, 1),
                                        crop_shape=(350, 350), normalize="clip01"))
    Veto.load(str(path)).score([np.zeros((400, 400))])
    assert calls == [(350, 350)]


def test_architecture_backend_labeler_sink_command_hooks(register_plugin):
    built = {}

    class Plugin:
        @hookimpl
        def sfxveto_architectures(self):
            return [ArchitectureSpec("tiny", lambda shape: built.setdefault("tiny", shape), (64, 64, 1))]

        @hookimpl
        def sfxveto_backends(self):
            return [BackendSpec("ones", lambda model, options: "classifier")]

        @hookimpl
        def sfxveto_labelers(self):
            return [LabelerSpec("count-bright", lambda options: (lambda frame: int((frame > 9).sum())))]

        @hookimpl
        def sfxveto_sinks(self):
            return [SinkSpec("list", lambda options: [])]

        @hookimpl
        def sfxveto_commands(self):
            return [CommandSpec("hello", "say hello", lambda p: None, lambda a: 0)]

    register_plugin(Plugin(), "kitchen-sink")
    manager.architectures()["tiny"].build((64, 64, 1))
    assert built == {"tiny": (64, 64, 1)}
    assert manager.backends()["ones"].create(None, {}) == "classifier"
    assert manager.labelers()["count-bright"].create({})(np.full((2, 2), 10)) == 4
    assert manager.sinks()["list"].create({}) == []
    assert "hello" in manager.commands()


def test_decision_observer_hook(register_plugin):
    seen = []

    class Observer:
        @hookimpl
        def sfxveto_decision(self, event, decision):
            seen.append((event, decision))

    register_plugin(Observer(), "observer")
    manager.notify_decision("a.cxi //0", "hit")
    assert seen == [("a.cxi //0", "hit")]


def test_duplicate_names_are_refused_naming_both_plugins(register_plugin):
    class Dup:
        @hookimpl
        def sfxveto_architectures(self):
            return [ArchitectureSpec("paper", lambda shape: None)]

    register_plugin(Dup(), "impostor")
    with pytest.raises(PluginError, match=r"'paper' is provided by both plugin 'sfx_cnn_veto.core.plugin' and plugin 'impostor'"):
        manager.architectures()


def test_a_plugin_declares_its_own_config_group_validated_by_its_dataclass(register_plugin):
    from dataclasses import dataclass

    from sfx_cnn_veto.config import parse_config

    @dataclass(frozen=True)
    class BeamlineOptions:
        hutch: str = "mfx"
        shots: int = 1

    class Adapter:
        @hookimpl
        def sfxveto_config_groups(self):
            return [ConfigGroupSpec("beamline", BeamlineOptions, "a third-party adapter's options"),
                    ConfigGroupSpec("free")]

    with pytest.raises(ConfigError, match="beamline: unknown key"):
        parse_config({"beamline": {"hutch": "cxi"}})
    register_plugin(Adapter(), "beamline-adapter")
    config = parse_config({"beamline": {"hutch": "cxi"}, "free": {"anything": [1, 2]}})
    assert config.group("beamline") == BeamlineOptions(hutch="cxi", shots=1)
    assert config.group("free") == {"anything": [1, 2]}
    assert parse_config({}).group("beamline") == BeamlineOptions()
    with pytest.raises(ConfigError, match=r"beamline.shot: unknown key; allowed keys: hutch, shots"):
        parse_config({"beamline": {"shot": 2}})
    with pytest.raises(ConfigError, match=r"beamline.shots: expected an integer"):
        parse_config({"beamline": {"shots": "2"}})
    with pytest.raises(ConfigError, match=r"beamlines: unknown key; allowed keys: model, decision, crop, reader, beamline, free, plugins$"):
        parse_config({"beamlines": {}})


def test_a_plugin_may_not_declare_a_group_the_core_owns(register_plugin):
    from sfx_cnn_veto.config import parse_config

    class Greedy:
        @hookimpl
        def sfxveto_config_groups(self):
            return [ConfigGroupSpec("model")]

    register_plugin(Greedy(), "greedy")
    with pytest.raises(PluginError, match="config group 'model' is the core's.*plugin 'greedy'"):
        parse_config({})


def test_the_core_finds_a_command_by_its_role_not_its_name(register_plugin):
    from sfx_cnn_veto.types import ROLE_FILTER_LIST

    assert manager.command_with_role(ROLE_FILTER_LIST) is None

    class ListFilter:
        @hookimpl
        def sfxveto_commands(self):
            return [CommandSpec("my-filter", "filter a list", lambda p: None, lambda a: 0, roles=(ROLE_FILTER_LIST,)),
                    CommandSpec("other", "no role", lambda p: None, lambda a: 0)]

    register_plugin(ListFilter(), "list-filter")
    assert manager.command_with_role(ROLE_FILTER_LIST).name == "my-filter"
    assert manager.command_with_role("no-such-role") is None


def test_the_crystfel_adapters_filter_lst_is_the_list_filter():
    from sfx_cnn_veto.types import ROLE_FILTER_LIST

    pm = manager.new_plugin_manager()
    assert manager.command_with_role(ROLE_FILTER_LIST, pm).name == "filter-lst"


def test_the_adapters_declare_their_config_groups():
    pm = manager.new_plugin_manager()
    assert {"crystfel", "om", "psana"} <= set(manager.config_groups(pm))
    for name in ("crystfel", "om", "psana"):
        assert manager.provider_of("sfxveto_config_groups", name, pm) == name


@pytest.fixture
def installed_distribution(tmp_path, monkeypatch):
    """A real (tiny, test-only) installed distribution with two entry points, one broken."""
    site = tmp_path / "site"
    pkg = site / "veto_thirdparty"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(textwrap.dedent('''
        from sfx_cnn_veto import hookimpl
        from sfx_cnn_veto.types import CommandSpec

        @hookimpl
        def sfxveto_commands():
            return [CommandSpec("thirdparty-hello", "a third-party command",
                                lambda parser: None, lambda args: print("hello from a plugin") or 0)]
    '''))
    (pkg / "broken.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    dist = site / "veto_thirdparty-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: veto-thirdparty\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[sfx_cnn_veto]\nthirdparty = veto_thirdparty.good\nbroken = veto_thirdparty.broken\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield
    for name in [m for m in sys.modules if m.startswith("veto_thirdparty")]:
        del sys.modules[name]


def test_entry_points_load_and_a_broken_plugin_only_warns(installed_distribution, caplog):
    with caplog.at_level(logging.WARNING):
        pm = manager.new_plugin_manager()
    assert "thirdparty" in pm.origins
    assert "veto-thirdparty 1.2.3" in pm.origins["thirdparty"]
    assert "this plugin is broken on purpose" in pm.failed["broken"]
    assert "failed to load and is skipped" in caplog.text
    assert "thirdparty-hello" in manager.commands(pm)


def test_strict_mode_raises_for_a_broken_plugin(installed_distribution):
    with pytest.raises(PluginError, match="'broken'.*this plugin is broken on purpose"):
        manager.new_plugin_manager(strict=True)


def test_blocking_a_plugin(installed_distribution, monkeypatch):
    monkeypatch.setenv("SFX_CNN_VETO_BLOCK", "broken")
    pm = manager.new_plugin_manager(strict=True)
    assert "broken" not in pm.failed and "thirdparty" in pm.origins


def test_third_party_command_runs_through_the_cli(installed_distribution, capsys):
    from sfx_cnn_veto.cli import main

    manager.reset_plugin_manager()
    try:
        assert main(["thirdparty-hello"]) == 0
        assert "hello from a plugin" in capsys.readouterr().out
        assert main(["plugins"]) == 0
        out = capsys.readouterr().out
        assert "thirdparty | entry point 'thirdparty'" in out
        assert "broken | FAILED TO LOAD" in out
    finally:
        manager.reset_plugin_manager()
