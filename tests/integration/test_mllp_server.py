"""The asyncio MLLP listener (HL7 v2.5 Appendix C.4) with a plain handler over real loopback
sockets: the handler runs in the thread pool with a context factory bound to the peer address,
a failing handler closes only its connection, idle connections are closed, and a graceful stop
lets the message in flight finish and answer before the connections close."""
import socket
import threading
import time

import hl7.client

from hie.mllp import MllpServer
from tests.mllp_support import MllpClient, call_in_loop, running


def _server(handler, **kw):
    async def start():
        return await MllpServer("127.0.0.1", 0, handler, **kw).start()
    return running(start)


def test_echo_with_context_factory_and_python_hl7_client():
    seen = []

    def handler(ctx_factory, payload):
        seen.append((ctx_factory("ITI-8"), threading.current_thread().name))
        return b"ECHO " + payload

    with _server(handler, context_factory=lambda t, remote_addr: (t, remote_addr)) as srv:
        host, port = srv.address
        assert port != 0
        with hl7.client.MLLPClient(host, port) as client:
            assert client.send_message(b"MSH|x") == b"\x0bECHO MSH|x\x1c\r"
            assert client.send_message("张三") == "\x0bECHO 张三\x1c\r".encode()
    assert seen[0][0] == ("ITI-8", "127.0.0.1")
    assert seen[0][1].startswith("mllp")


def test_no_answer_when_handler_returns_nothing():
    with _server(lambda f, p: None if p == b"quiet" else p) as srv:
        with MllpClient(srv.address) as c:
            c.send_raw(b"\x0bquiet\x1c\r")
            assert c.request(b"loud") == b"loud"


def test_failing_handler_closes_only_its_connection():
    def handler(_f, payload):
        if payload == b"boom":
            raise RuntimeError("handler bug")
        return payload

    with _server(handler) as srv:
        with MllpClient(srv.address) as c:
            assert c.request(b"boom") is None
        with MllpClient(srv.address) as c:
            assert c.request(b"fine") == b"fine"


def test_idle_connections_are_closed():
    with _server(lambda f, p: p, idle_timeout=0.3) as srv:
        with MllpClient(srv.address) as c:
            assert c.request(b"a") == b"a"
            t0 = time.monotonic()
            assert c.is_closed_by_peer()
            assert time.monotonic() - t0 < 5


def test_concurrent_connections():
    def handler(_f, payload):
        time.sleep(0.05)
        return payload

    out = []
    with _server(handler) as srv:
        def one(i):
            with MllpClient(srv.address) as c:
                out.append(c.request(f"m{i}".encode()))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(out) == sorted(f"m{i}".encode() for i in range(20))


def test_graceful_stop_finishes_the_message_in_flight():
    started = threading.Event()

    def slow(_f, payload):
        started.set()
        time.sleep(0.5)
        return b"done " + payload

    with _server(slow) as srv:
        idle = MllpClient(srv.address)
        busy = MllpClient(srv.address)
        busy.send_raw(b"\x0bwork\x1c\r")
        assert started.wait(10)
        t0 = time.monotonic()
        call_in_loop(srv, srv.stop)
        assert time.monotonic() - t0 >= 0.3  # waited for the handler
        assert busy.receive() == b"done work"
        assert busy.is_closed_by_peer() and idle.is_closed_by_peer()
        try:
            socket.create_connection(srv.address, timeout=2).close()
            refused = False
        except OSError:
            refused = True
        assert refused
        idle.close()
        busy.close()
