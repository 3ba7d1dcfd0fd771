"""Every command line and public function refuses bad input with a message that names the
argument and what it accepts: a usage error (exit 2), a ValueError or a TypeError, never a
traceback from deep inside or a value that misbehaves later."""

from __future__ import annotations

import math

import pytest

from aurora_backend import retry_atomic, retrying
from aurora_backend.simulator import cli

SIM = ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:5432"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (SIM + ["--scale-every", "-1"], "--scale-every expects a finite number of seconds > 0, got '-1'"),
        (SIM + ["--scale-every", "0"], "--scale-every expects a finite number of seconds > 0"),
        (SIM + ["--pause-after-idle", "0"], "--pause-after-idle expects a finite number of seconds > 0"),
        (SIM + ["--resume-delay", "inf"], "--resume-delay expects a finite number of seconds >= 0"),
        (SIM + ["--resume-fail", "-3"], "--resume-fail expects a whole number >= 0, got '-3'"),
        (SIM + ["--control", "10.1.2.3:7000"], "--control must be a loopback address"),
        (["--listen", "8.8.8.8:6543", "--upstream", "127.0.0.1:5432"], "--listen must be a loopback address"),
        (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:99999"], "--upstream expects a TCP port 1-65535"),
        (["--listen", "127.0.0.1", "--upstream", "127.0.0.1:5432"], "--listen expects HOST:PORT"),
        (["cluster", "--dns-delay", "nan"], "--dns-delay expects a finite number of seconds >= 0, got 'nan'"),
        (["cluster", "--ttl", "-1"], "--ttl expects a finite number of seconds >= 0"),
        (["cluster", "--readers", "-1"], "--readers expects a whole number >= 0"),
        (["cluster", "--port", "70000"], "--port expects a TCP port 1-65535"),
        (["cluster", "--control", "nonsense"], "--control expects HOST:PORT such as 127.0.0.1:6543, got 'nonsense'"),
        (["cluster", "--control", "10.0.0.1:7000"], "--control must be a loopback address"),
    ],
)
def test_simulator_command_lines_refuse_bad_values_with_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "options, error, message",
    [
        (
            {"max_time": math.nan},
            ValueError,
            "retry_atomic(max_time=nan): give a finite number of seconds >= 0 or None",
        ),
        ({"max_time": math.inf}, ValueError, "max_time=inf"),
        ({"backoff_max": math.inf}, ValueError, "retry_atomic(backoff_max=inf): give a finite number"),
        ({"backoff_base": -1}, ValueError, "backoff_base=-1"),
        ({"commit_check_time": "5"}, ValueError, "commit_check_time='5'"),
        ({"max_attempts": 0}, ValueError, "max_attempts=0"),
        ({"savepoint": "no"}, TypeError, "retry_atomic(savepoint='no'): give True or False."),
        ({"record_txid": 1}, TypeError, "record_txid=1"),
        (
            {"bogus": 1},
            TypeError,
            "retry_atomic() got an unexpected keyword argument 'bogus'; its options are: using, savepoint",
        ),
    ],
)
def test_retry_atomic_refuses_bad_options_naming_them(options, error, message):
    with pytest.raises(error) as info:
        retry_atomic(**options)
    assert message in str(info.value)
    assert "__init__" not in str(info.value)


def test_retrying_names_itself_for_an_unknown_option():
    with pytest.raises(TypeError, match=r"retrying\(\) got an unexpected keyword argument 'max_tries'"):
        retrying(max_tries=3)
