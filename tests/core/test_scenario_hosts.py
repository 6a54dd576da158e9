"""[[host]] tables in scenario files, and a process's ``host``: checked whole, refused in
words naming file, table and key, before anything is created or started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from app.core.procs import LaunchError, ProcessManager
from app.core.scenario import (
    MAX_HOSTS,
    LabHost,
    LabNetworkNeeded,
    ScenarioError,
    check_scenario,
    load_scenario,
)
from app.core.scenario_start import start_scenario, start_scenario_each

PROCESS = '[[process]]\nname = "p"\ncommand = ["true"]\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return [e.replace(str(path), "s.toml") for e in info.value.errors]


def one_error(tmp_path: Path, text: str) -> str:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


def host(name: str, address: str) -> str:
    return f'[[host]]\nname = "{name}"\naddress = {address}\n'


def address_error(tmp_path: Path, address: str) -> str:
    error = one_error(tmp_path, host("h", f'"{address}"') + PROCESS)
    prefix = 's.toml: host #1 "h": key "address": '
    assert error.startswith(prefix), error
    return error.removeprefix(prefix)


# ----------------------------------------------------------------------- good files


def test_one_address_a_list_and_ipv6(tmp_path: Path) -> None:
    text = (
        host("server", '"10.0.2.15/24"')
        + host("client", '["10.0.2.20/24", "10.0.2.21/24", "FD00::0020/64"]')
        + host("v6", '"2001:db8::1/64"')
        + '[[process]]\nname = "srv"\nhost = "server"\nprogram = "tcp-server"\n'
        'args = ["7000", "--bind", "10.0.2.15"]\n'
        '[[process]]\nname = "cli"\nhost = "client"\nprogram = "tcp-client"\n'
        'args = ["10.0.2.15", "hello", "7000"]\n' + PROCESS
    )
    scenario = load_scenario(write(tmp_path, text))
    assert scenario.hosts == (
        LabHost("server", ("10.0.2.15/24",)),
        LabHost("client", ("10.0.2.20/24", "10.0.2.21/24", "fd00::20/64")),
        LabHost("v6", ("2001:db8::1/64",)),
    )
    assert [(e.name, e.host) for e in scenario.entries] == [
        ("srv", "server"),
        ("cli", "client"),
        ("p", None),
    ]


def test_a_file_without_hosts_has_none(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, PROCESS))
    assert scenario.hosts == ()
    assert scenario.entries[0].host is None


def test_point_to_point_and_single_address_prefixes_keep_every_address(tmp_path: Path) -> None:
    text = host("a", '["10.0.3.0/31", "10.0.4.0/32"]') + host("b", '"10.0.3.1/31"') + PROCESS
    scenario = load_scenario(write(tmp_path, text))
    assert [h.addresses for h in scenario.hosts] == [
        ("10.0.3.0/31", "10.0.4.0/32"),
        ("10.0.3.1/31",),
    ]


def test_a_netmask_is_written_as_its_prefix(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, host("a", '"10.0.2.15/255.255.255.0"') + PROCESS))
    assert scenario.hosts[0].addresses == ("10.0.2.15/24",)


def test_the_largest_lab(tmp_path: Path) -> None:
    text = "".join(host(f"h{n}", f'"10.0.2.{n + 1}/24"') for n in range(MAX_HOSTS)) + PROCESS
    assert len(load_scenario(write(tmp_path, text)).hosts) == MAX_HOSTS == 16


# --------------------------------------------------------------------------- refusals


def test_a_bare_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    assert address_error(tmp_path, "10.0.2.15") == (
        '"10.0.2.15" has no prefix: an interface address needs its network\'s length '
        'after "/" (add /24: "10.0.2.15/24")'
    )
    assert address_error(tmp_path, "fd00::15").endswith('(add /64: "fd00::15/64")')


@pytest.mark.parametrize(
    ("address", "words"),
    [
        (
            "10.0.2.0/24",
            "10.0.2.0 is the network address of 10.0.2.0/24 (its first); "
            "a host takes one of 10.0.2.1 to 10.0.2.254",
        ),
        ("10.0.2.255/24", "10.0.2.255 is the broadcast address of 10.0.2.0/24 (its last)"),
        ("127.0.0.1/8", "127.0.0.1 is a loopback address"),
        ("127.5.5.5/8", "127.5.5.5 is a loopback address"),
        ("::1/128", "::1 is a loopback address"),
        ("224.0.0.1/24", "224.0.0.1 is a multicast address"),
        ("ff02::1/64", "ff02::1 is a multicast address"),
        ("0.0.0.0/24", "0.0.0.0 is the unspecified address"),
        ("::/64", ":: is the unspecified address"),
        ("169.254.1.1/16", "169.254.1.1 is link-local (169.254.0.0/16)"),
        ("fe80::1/64", "fe80::1 is link-local (fe80::/10)"),
        ("::ffff:10.0.2.15/120", "an IPv4 address written as IPv6: write 10.0.2.15 itself"),
        ("10.0.2.300/24", "Octet 300 (> 255) not permitted in '10.0.2.300'"),
        ("fd00::g/64", "Only hex digits permitted in 'g'"),
        ("server/24", "is not an IP address with a prefix"),
        ("10.0.2.15/33", 'the prefix after "/" must be a length from 0 to 32 (like /24), not "33"'),
        ("fd00::1/129", "a length from 0 to 128 (like /64)"),
        ("10.0.2.15/x", 'not "x"'),
    ],
)
def test_an_address_no_host_can_have_is_refused_with_the_reason(
    tmp_path: Path, address: str, words: str
) -> None:
    error = address_error(tmp_path, address)
    assert error.startswith(f'"{address}"'), error
    assert words in error, error


def test_address_must_be_text_or_a_list_of_text(tmp_path: Path) -> None:
    def error(value: str) -> str:
        return one_error(tmp_path, host("h", value) + PROCESS)

    assert error("7") == (
        's.toml: host #1 "h": key "address": must be text like "10.0.2.15/24", '
        "or a list of them, not a whole number"
    )
    assert error("[]") == (
        's.toml: host #1 "h": key "address": is empty: give at least one, like "10.0.2.15/24"'
    )
    assert error('["10.0.2.15/24", 7]') == (
        's.toml: host #1 "h": key "address": item 2 must be text like "10.0.2.15/24", '
        "not a whole number"
    )
    missing = one_error(tmp_path, '[[host]]\nname = "h"\n' + PROCESS)
    assert missing == (
        's.toml: host #1 "h": key "address": missing '
        '(every host needs an address in CIDR, like "10.0.2.15/24")'
    )


def test_host_names(tmp_path: Path) -> None:
    rule = (
        "a host name is 1 to 10 small letters, digits or '-', starting with a letter "
        "(it becomes part of a network namespace's name, obs<PID>-<name>)"
    )
    for bad in ("Server", "server_1", "1server", "elevenchars", "", "-a"):
        error = one_error(tmp_path, host(bad, '"10.0.2.15/24"') + PROCESS)
        assert error == f's.toml: host #1 "{bad}": key "name": {rule}', error
    assert one_error(tmp_path, '[[host]]\naddress = "10.0.2.15/24"\n' + PROCESS) == (
        's.toml: host #1: key "name": missing (every host needs a name)'
    )
    assert one_error(tmp_path, '[[host]]\nname = 3\naddress = "10.0.2.15/24"\n' + PROCESS) == (
        's.toml: host #1: key "name": must be text, not a whole number'
    )
    assert load_scenario(write(tmp_path, host("tenchars-1", '"10.0.2.15/24"') + PROCESS)).hosts


def test_duplicate_host_names_and_addresses(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        host("a", '"10.0.2.15/24"')
        + host("a", '"10.0.2.16/24"')
        + host("b", '["10.0.2.15/16", "10.0.2.17/24", "10.0.2.17/24"]')
        + host("c", '["FD00::1/64"]')
        + host("d", '["fd00:0::1/48"]')
        + PROCESS,
    )
    assert errors == [
        's.toml: host #2 "a": key "name": "a" is already the name of host #1',
        's.toml: host #3 "b": key "address": 10.0.2.15 is already an address of host #1 "a"',
        's.toml: host #3 "b": key "address": 10.0.2.17 is given twice',
        's.toml: host #5 "d": key "address": fd00::1 is already an address of host #4 "c"',
    ]


def test_unknown_keys_in_a_host_table(tmp_path: Path) -> None:
    error = one_error(tmp_path, host("h", '"10.0.2.15/24"') + 'adress = "10.0.2.16/24"\n' + PROCESS)
    assert error == 's.toml: host #1 "h": key "adress": unknown key (did you mean "address"?)'
    error = one_error(tmp_path, host("h", '"10.0.2.15/24"') + "colour = 1\n" + PROCESS)
    assert error == 's.toml: host #1 "h": key "colour": unknown key (known: name, address)'


def test_host_tables_written_wrong(tmp_path: Path) -> None:
    assert one_error(tmp_path, '[host]\nname = "a"\naddress = "10.0.2.15/24"\n' + PROCESS) == (
        "s.toml: write [[host]] with two brackets for each host, not [host]"
    )
    assert one_error(tmp_path, 'host = "a"\n' + PROCESS) == (
        's.toml: "host" must be a list of [[host]] tables'
    )
    assert one_error(tmp_path, "host = [1]\n" + PROCESS) == (
        "s.toml: host #1: must be a [[host]] table"
    )
    assert one_error(tmp_path, "hosts = 1\n" + PROCESS) == (
        's.toml: key "hosts": unknown; a scenario holds only [[process]] and [[host]] tables '
        "(did you mean [[host]]?)"
    )


def test_at_most_sixteen_hosts(tmp_path: Path) -> None:
    text = "".join(host(f"h{n}", f'"10.0.2.{n + 1}/24"') for n in range(MAX_HOSTS + 1)) + PROCESS
    assert one_error(tmp_path, text) == (
        "s.toml: 17 [[host]] tables: a scenario holds at most 16 hosts"
    )


def test_a_process_on_an_unknown_host(tmp_path: Path) -> None:
    on = '[[process]]\nname = "p"\nhost = {}\ncommand = ["true"]\n'
    hosts = host("server", '"10.0.2.15/24"') + host("client", '"10.0.2.20/24"')
    assert one_error(tmp_path, hosts + on.format('"servr"')) == (
        's.toml: process #1 "p": key "host": there is no [[host]] named "servr" '
        '(known: "server", "client"); did you mean "server"?'
    )
    assert one_error(tmp_path, hosts + on.format('"router"')) == (
        's.toml: process #1 "p": key "host": there is no [[host]] named "router" '
        '(known: "server", "client")'
    )
    assert one_error(tmp_path, on.format('"server"')) == (
        's.toml: process #1 "p": key "host": there is no [[host]] named "server": '
        'this file has no [[host]] tables (add one: [[host]] name = "server" '
        'address = "10.0.2.15/24")'
    )
    assert one_error(tmp_path, hosts + on.format("1")) == (
        's.toml: process #1 "p": key "host": must be text naming a [[host]], like "server", '
        "not a whole number"
    )


def test_a_process_on_a_host_whose_table_is_wrong_is_refused_once(tmp_path: Path) -> None:
    text = (
        host("server", '"10.0.2.15"')
        + '[[process]]\nname = "p"\nhost = "server"\ncommand = ["true"]\n'
    )
    assert errors_of(tmp_path, text) == [
        's.toml: host #1 "server": key "address": "10.0.2.15" has no prefix: an interface '
        'address needs its network\'s length after "/" (add /24: "10.0.2.15/24")'
    ]


# ------------------------------------------------------------------- checked whole


ALL_MISTAKES = """
lab = "x"

[[host]]
name = "server"
address = "10.0.2.15"

[[host]]
name = "Client"
address = ["10.0.2.20/24", "127.0.0.1/8"]

[[host]]
name = "server"
address = "10.0.2.15/24"
colour = "red"

[[process]]
name = "srv"
host = "server"
program = "tcp-server"
args = ["7000"]

[[process]]
name = "cli"
host = "clint"
program = "tcp-client"
args = ["10.0.2.15", "hello"]
"""


def test_every_mistake_of_hosts_and_processes_at_once_in_order(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, ALL_MISTAKES)
    expected_starts = [
        's.toml: key "lab": unknown; a scenario holds only [[process]] and [[host]] tables',
        's.toml: host #1 "server": key "address": "10.0.2.15" has no prefix',
        's.toml: host #2 "Client": key "name": a host name is 1 to 10 small letters',
        's.toml: host #2 "Client": key "address": "127.0.0.1/8": 127.0.0.1 is a loopback',
        's.toml: host #3 "server": key "name": "server" is already the name of host #1',
        's.toml: host #3 "server": key "colour": unknown key',
        's.toml: process #2 "cli": key "args": the following arguments are required: PORT',
        's.toml: process #2 "cli": key "host": there is no [[host]] named "clint"',
    ]
    assert len(errors) == len(expected_starts), errors
    for error, start in zip(errors, expected_starts, strict=True):
        assert error.startswith(start), (error, start)
        assert "\n" not in error
    assert len(check_scenario(tmp_path / "s.toml")) == len(expected_starts)


def test_host_mistakes_are_reported_with_a_file_without_processes(tmp_path: Path) -> None:
    assert errors_of(tmp_path, host("Server", '"10.0.2.15/24"')) == [
        's.toml: host #1 "Server": key "name": a host name is 1 to 10 small letters, digits or '
        "'-', starting with a letter (it becomes part of a network namespace's name, "
        "obs<PID>-<name>)",
        "s.toml: no [[process]] table: nothing to start",
    ]


def test_checking_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No program runs while a file is checked: no `ip`, no unshare, no namespace."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"checking a scenario ran {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    assert len(errors_of(tmp_path, ALL_MISTAKES)) == 8
    good = host("server", '"10.0.2.15/24"') + PROCESS
    assert load_scenario(write(tmp_path, good)).hosts == (LabHost("server", ("10.0.2.15/24",)),)


# ------------------------------------------------- starting: not without a lab network


def test_a_scenario_with_hosts_is_not_started_without_its_network(tmp_path: Path) -> None:
    text = (
        host("server", '"10.0.2.15/24"')
        + host("client", '"10.0.2.20/24"')
        + '[[process]]\nname = "a"\ncommand = ["sleep", "30"]\n'
    )
    scenario = load_scenario(write(tmp_path, text))
    file = tmp_path / "s.toml"
    words = (
        "this scenario has lab hosts (server, client); start it with "
        f"`observatory --scenario {file}` or `observatory lab up {file}` as root; "
        "nothing was started"
    )
    with ProcessManager(register_atexit=False) as manager:
        with pytest.raises(LabNetworkNeeded) as info:
            start_scenario(manager, scenario)
        assert str(info.value) == words
        assert isinstance(info.value, LaunchError)  # `lab up` says it as any launch failure
        with pytest.raises(LabNetworkNeeded, match="lab hosts"):
            start_scenario_each(manager, scenario)
        assert manager.names() == []


def test_a_scenario_without_hosts_needs_no_network(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, '[[process]]\nname = "a"\ncommand = ["true"]\n'))
    with ProcessManager(register_atexit=False) as manager:
        assert [i.name for i in start_scenario(manager, scenario)] == ["a"]
        assert [r.outcome for r in start_scenario_each(manager, scenario)] in (
            ["started"],
            ["kept"],
        )


def test_a_host_may_not_take_the_switch_s_name(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[host]]\nname = "sw"\naddress = "10.0.2.15/24"\n')
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert any('"sw" is the lab network\'s switch' in e for e in caught.value.errors)
