"""The command line's process setup (its verbs are tested with the modules they run)."""

import jax
import pytest

from momentssn import cli


@pytest.fixture
def restore_cache_dir():
    old = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", old)


def test_compilation_cache_defaults_to_the_user_cache(monkeypatch, tmp_path, restore_cache_dir):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cli._setup_jax()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "momentssn" / "xla")
    assert jax.config.jax_enable_x64


def test_compilation_cache_follows_jax_variable(monkeypatch, tmp_path, restore_cache_dir):
    # JAX reads JAX_COMPILATION_CACHE_DIR at import; the command line must not override it
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    jax.config.update("jax_compilation_cache_dir", "")
    cli._setup_jax()
    assert jax.config.jax_compilation_cache_dir == ""
