"""The C++ harness of a Verilated component, generated from its signature.

Every top-level stream port becomes a *stream* of the harness: an ``In`` stream a source fed
from a queue of items, an ``Out`` stream a sink that collects items. Every other ``In`` port is
an *input* the caller sets (held constant while the clock runs); every other ``Out`` port an
*output* the caller reads, and whose nonzero cycles the harness counts. Nothing in the harness
is written per unit: it is this text with the port list filled in.

Items cross the C ABI as little-endian arrays of 32-bit words (Verilator's own ``VlWide``
layout), ``ceil(width/32)`` words per item, bits above the width zero.

The clock loop is the one of :mod:`sim.bench`, cycle for cycle, so that both backends give the
same cycle counts:

* each cycle, a source not already presenting an item draws ``u`` from its generator when
  ``stall > 0``, and withholds ``valid`` this cycle if ``u < stall``; a presented item is held
  until ``ready``. A sink draws every cycle while it wants items and withholds ``ready`` if
  ``u < stall``;
* the generators are NumPy's PCG64 (``Generator.random()``: ``(next64 >> 11) * 2**-53``),
  started from the state of the NumPy generator the Python side would use, so that the stall
  pattern is the same draw for draw;
* inputs are set, the model settles (``ready`` may depend on ``valid``), ``ready``/``valid`` and
  payloads are sampled, then the rising edge;
* two evaluations a cycle are one too many when the inputs do not change: Verilator runs all
  the logic an input reaches on every ``eval()``. So the harness evaluates before the edge only
  when an input changed (a source's ``valid`` or item, a sink's ``ready``, a set input), and
  lets the model know of the clock's fall by setting its last-seen clock (Verilator's
  ``__Vtrigprevexpr___TOP__clk__0``) instead of evaluating. The designs have one clock domain
  on the rising edge (Amaranth's ``sync``), so nothing happens on the fall. With a Verilator
  that names it otherwise, the harness falls back to evaluating. When no output depends
  combinationally on an input (``ITF_INPUTS_REACH_OUTPUTS`` 0, decided at build time by
  :func:`sim.verilator.build.inputs_reach_outputs`), the outputs after the edge are those
  before the next one whatever the inputs, and the harness evaluates once a cycle;
* a source waiting ``budget + 1`` cycles for ``ready``, or a sink seeing nothing for
  ``budget + 1`` cycles, stops the run with a timeout that names the stream.
"""

from dataclasses import dataclass

from amaranth.lib import stream, wiring

__all__ = ["Port", "Ports", "ports_of", "harness_cpp", "verilator_name"]


@dataclass(frozen=True)
class Port:
    """One harness port: ``name`` (the Verilog name, path joined by ``__``) and ``width``."""

    name: str
    width: int

    @property
    def words(self):
        return max(1, -(-self.width // 32))


@dataclass(frozen=True)
class Ports:
    """The harness ports of a component: ``sources`` and ``sinks`` (stream names, in signature
    order, with their payload ports), ``inputs`` and ``outputs`` (plain ports)."""

    sources: tuple
    sinks: tuple
    inputs: tuple
    outputs: tuple

    @property
    def streams(self):
        """Sources then sinks: the stream numbering of the C API."""
        return self.sources + self.sinks


def _width(value):
    return len(value.as_value() if hasattr(value, "as_value") else value)


def ports_of(component):
    """The :class:`Ports` of ``component``'s signature (streams at the top level only)."""
    members = component.signature.members
    streams = [name for name, member in members.items()
               if member.is_signature and isinstance(member.signature, stream.Signature)]
    sources = tuple(Port(name, _width(getattr(component, name).payload)) for name in streams
                    if members[name].flow == wiring.In)
    sinks = tuple(Port(name, _width(getattr(component, name).payload)) for name in streams
                  if members[name].flow == wiring.Out)
    inputs, outputs = [], []
    for path, member, value in component.signature.flatten(component):
        if path[0] in streams:
            continue
        port = Port("__".join(str(p) for p in path), _width(value))
        (inputs if member.flow == wiring.In else outputs).append(port)
    return Ports(sources, sinks, tuple(inputs), tuple(outputs))


def verilator_name(name):
    """The C++ member Verilator gives a top-level port: it escapes ``__`` as ``___05F``."""
    return name.replace("__", "___05F")


def _setter(port, target):
    """C++ statements setting the model port ``target`` from ``const uint32_t* w``."""
    if port.width > 64:
        return "".join(f"top->{target}[{i}] = w[{i}]; " for i in range(port.words))
    if port.width > 32:
        return f"top->{target} = (uint64_t)w[0] | ((uint64_t)w[1] << 32); "
    return f"top->{target} = w[0]; "


def _getter(port, source):
    """C++ statements copying the model port ``source`` into ``uint32_t* w``."""
    if port.width > 64:
        return "".join(f"w[{i}] = top->{source}[{i}]; " for i in range(port.words))
    if port.width > 32:
        return f"w[0] = (uint32_t)top->{source}; w[1] = (uint32_t)(top->{source} >> 32); "
    return f"w[0] = top->{source}; "


def harness_cpp(ports):
    """C++ source of the harness for ``ports`` (a :class:`Ports`), around a model ``Vdut``."""
    v = verilator_name
    streams = ports.streams
    n_src = len(ports.sources)
    lines = []
    # Per-stream drivers: set valid/payload (sources) or ready (sinks), read the other side.
    for i, s in enumerate(streams):
        if i < n_src:
            lines.append(f"static void drive_{i}(Vdut* top, bool valid, const uint32_t* w) "
                         f"{{ top->{v(s.name + '__valid')} = valid; "
                         f"if (valid) {{ {_setter(s, v(s.name + '__payload'))}}} }}")
            lines.append(f"static bool handshake_{i}(Vdut* top) "
                         f"{{ return top->{v(s.name + '__ready')}; }}")
        else:
            lines.append(f"static void drive_{i}(Vdut* top, bool ready, const uint32_t*) "
                         f"{{ top->{v(s.name + '__ready')} = ready; }}")
            lines.append(f"static bool handshake_{i}(Vdut* top) "
                         f"{{ return top->{v(s.name + '__valid')}; }}")
            lines.append(f"static void payload_{i}(Vdut* top, uint32_t* w) "
                         f"{{ {_getter(s, v(s.name + '__payload'))}}}")
    drive = ", ".join(f"drive_{i}" for i in range(len(streams)))
    shake = ", ".join(f"handshake_{i}" for i in range(len(streams)))
    sink_payload = ", ".join(["nullptr"] * n_src + [f"payload_{i}" for i in range(n_src,
                                                                                   len(streams))])
    set_inputs = "\n".join(f"        case {i}: {_setter(p, v(p.name))}break;"
                           for i, p in enumerate(ports.inputs))
    get_outputs = "\n".join(f"        case {i}: {_getter(p, v(p.name))}break;"
                            for i, p in enumerate(ports.outputs))
    count_outputs = "\n".join(
        f"        m->counts[{i}] += " + (
            f"(top->{v(p.name)} != 0);" if p.width <= 64 else
            " || ".join(f"top->{v(p.name)}[{k}]" for k in range(p.words)) + ";")
        for i, p in enumerate(ports.outputs))
    nonzero = "\n".join(
        f"        case {i}: return " + (
            f"top->{v(p.name)} != 0;" if p.width <= 64 else
            " || ".join(f"top->{v(p.name)}[{k}]" for k in range(p.words)) + ";")
        for i, p in enumerate(ports.outputs))
    words = ", ".join(str(s.words) for s in streams) or "0"
    return _TEMPLATE.format(
        n_streams=len(streams), n_sources=n_src, n_outputs=max(1, len(ports.outputs)),
        words=words, per_stream="\n".join(lines),
        drive=drive or "", handshake=shake or "", sink_payload=sink_payload or "",
        set_inputs=set_inputs, get_outputs=get_outputs, count_outputs=count_outputs,
        nonzero=nonzero,
    )


# The harness. {{ and }} are literal braces; {name} fields are filled by harness_cpp.
_TEMPLATE = r"""// Generated by sim/verilator/harness.py from the component's signature.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "Vdut.h"
#include "Vdut___024root.h"
#include "itf_settle.h"  // ITF_INPUTS_REACH_OUTPUTS, written by the build
#include "verilated.h"

namespace {{

constexpr int N_STREAMS = {n_streams};
constexpr int N_SOURCES = {n_sources};
constexpr int N_OUTPUTS = {n_outputs};
constexpr int WORDS[N_STREAMS + 1] = {{{words}}};

// NumPy's PCG64 (XSL-RR 128/64) and Generator.random().
struct Pcg64 {{
    unsigned __int128 state = 0, inc = 0;
    uint64_t next() {{
        const unsigned __int128 mult =
            ((unsigned __int128)0x2360ED051FC65DA4ULL << 64) | 0x4385DF649FCCF645ULL;
        state = state * mult + inc;
        uint64_t x = (uint64_t)(state >> 64) ^ (uint64_t)state;
        unsigned rot = (unsigned)(state >> 122);
        return (x >> rot) | (x << ((64 - rot) & 63));
    }}
    double uniform() {{ return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }}
}};

// Tell the model the clock fell without evaluating it (nothing happens on the fall): true if
// this Verilator keeps the clock's last-seen value where the harness knows it, else false.
template <class R>
static auto note_fall(R* r, int) -> decltype(r->__Vtrigprevexpr___TOP__clk__0 = 0, true) {{
    r->__Vtrigprevexpr___TOP__clk__0 = 0;
    return true;
}}
template <class R>
static bool note_fall(R*, long) {{ return false; }}

// Hold rst low, when the model has it (a reset tied low by the build has folded away).
template <class T>
static auto clear_reset(T* top, int) -> decltype(top->rst = 0, void()) {{ top->rst = 0; }}
template <class T>
static void clear_reset(T*, long) {{}}

struct Stream {{
    std::vector<uint32_t> items;  // source: queued items; sink: collected items
    size_t next = 0;              // source: index of the item to send next
    uint64_t want = 0;            // sink: items still wanted
    bool greedy = false;          // sink: take items beyond `want` too
    double stall = 0.0;
    Pcg64 rng;
    uint64_t budget = 10000;
    int64_t start = 0;            // cycle at which the stream starts (its local cycle 0)
    bool presenting = false;      // source: valid is up with items[next]
    bool ready = false;           // sink: ready this cycle
    bool driven = false;          // valid (source) or ready (sink) as last driven
    size_t driven_next = 0;       // source: the item last driven
    uint64_t wait = 0;            // cycles without a transfer (source: presenting; sink: wanting)
    int64_t first = -1, last = -1;  // local cycle of the first and last transfer
    uint64_t transfers = 0;
}};

{per_stream}

typedef void (*DriveFn)(Vdut*, bool, const uint32_t*);
typedef bool (*ShakeFn)(Vdut*);
typedef void (*PayloadFn)(Vdut*, uint32_t*);
const DriveFn DRIVE[N_STREAMS + 1] = {{{drive}}};
const ShakeFn SHAKE[N_STREAMS + 1] = {{{handshake}}};
const PayloadFn PAYLOAD[N_STREAMS + 1] = {{{sink_payload}}};

struct Model {{
    VerilatedContext ctx;
    Vdut* top;
    Stream streams[N_STREAMS + 1];
    uint64_t counts[N_OUTPUTS] = {{}};
    int64_t cycle = 0;
    int timed_out = -1;           // stream that timed out
    bool dirty = true;            // an input changed since the last eval
    Model() {{ top = new Vdut(&ctx); top->clk = 0; clear_reset(top, 0); top->eval(); }}
    ~Model() {{ top->final(); delete top; }}
}};

}}  // namespace

// The C API is all the library exports: the build hides every other symbol
// (-fvisibility=hidden), so that calls inside the model bind directly, not through the PLT.
#pragma GCC visibility push(default)
extern "C" {{

void* itf_new() {{ return new Model(); }}
void itf_free(void* p) {{ delete static_cast<Model*>(p); }}

void itf_config(void* p, int s, double stall, uint64_t budget, int64_t start, int greedy,
                const uint64_t* pcg) {{
    Model* m = static_cast<Model*>(p);
    Stream& st = m->streams[s];
    m->dirty = true;
    st.stall = stall; st.budget = budget; st.start = start; st.greedy = greedy;
    st.rng.state = ((unsigned __int128)pcg[0] << 64) | pcg[1];
    st.rng.inc = ((unsigned __int128)pcg[2] << 64) | pcg[3];
}}

void itf_push(void* p, int s, const uint32_t* data, uint64_t n) {{
    static_cast<Model*>(p)->dirty = true;
    Stream& st = static_cast<Model*>(p)->streams[s];
    if (st.next == st.items.size() / WORDS[s] && !st.presenting) {{  // all sent: start afresh
        st.items.clear();
        st.next = 0;
    }}
    st.items.insert(st.items.end(), data, data + n * WORDS[s]);
}}

void itf_expect(void* p, int s, uint64_t n) {{ static_cast<Model*>(p)->streams[s].want += n; }}

uint64_t itf_collected(void* p, int s) {{
    Model* m = static_cast<Model*>(p);
    return m->streams[s].items.size() / WORDS[s];
}}

// Move the first n collected items of sink s into out.
void itf_take(void* p, int s, uint32_t* out, uint64_t n) {{
    Stream& st = static_cast<Model*>(p)->streams[s];
    std::memcpy(out, st.items.data(), n * WORDS[s] * sizeof(uint32_t));
    st.items.erase(st.items.begin(), st.items.begin() + n * WORDS[s]);
}}

// first, last, transfers, items left (source) or still wanted (sink), wait.
void itf_stats(void* p, int s, int64_t* out) {{
    Stream& st = static_cast<Model*>(p)->streams[s];
    out[0] = st.first; out[1] = st.last; out[2] = (int64_t)st.transfers;
    out[3] = s < N_SOURCES ? (int64_t)(st.items.size() / WORDS[s] - st.next) : (int64_t)st.want;
    out[4] = (int64_t)st.wait;
}}

void itf_set_input(void* p, int i, const uint32_t* w) {{
    Vdut* top = static_cast<Model*>(p)->top;
    static_cast<Model*>(p)->dirty = true;
    switch (i) {{
{set_inputs}
        default: break;
    }}
}}

void itf_get_output(void* p, int i, uint32_t* w) {{
    Model* m = static_cast<Model*>(p);
    Vdut* top = m->top;
    m->top->eval();
    switch (i) {{
{get_outputs}
        default: break;
    }}
}}

uint64_t itf_count(void* p, int i) {{ return static_cast<Model*>(p)->counts[i]; }}
int64_t itf_cycle(void* p) {{ return static_cast<Model*>(p)->cycle; }}
int itf_timed_out(void* p) {{ return static_cast<Model*>(p)->timed_out; }}

// Whether output i is nonzero (false for no such output).
static bool output_nonzero(Vdut* top, int i) {{
    switch (i) {{
{nonzero}
        default: return false;
    }}
}}

static bool finished(Model* m, int mode, int output) {{
    if (mode == 3) return !output_nonzero(m->top, output);
    for (int s = 0; s < N_STREAMS; s++) {{
        const Stream& st = m->streams[s];
        if (s >= N_SOURCES && st.want) return false;
        if (s < N_SOURCES && mode == 0 && (st.presenting || st.next * WORDS[s] < st.items.size()))
            return false;
    }}
    return true;
}}

// Run the clock. mode 0: until every source is empty and every sink has what it wants;
// mode 1: until every sink has what it wants; mode 2: exactly max_cycles cycles; mode 3:
// until plain output `output` is zero, as the last edge left it (checked before each cycle).
// Returns 0 when finished, 1 on a stream timeout (itf_timed_out names it), 2 when
// max_cycles ran out first.
int itf_run(void* p, int mode, uint64_t max_cycles, int output) {{
    Model* m = static_cast<Model*>(p);
    Vdut* top = m->top;
    for (uint64_t n = 0;; n++) {{
        if (mode != 2 && finished(m, mode, output)) return 0;
        if (n == max_cycles) return mode == 2 ? 0 : 2;
        const int64_t t = m->cycle;
        bool dirty = m->dirty;
        for (int s = 0; s < N_STREAMS; s++) {{
            Stream& st = m->streams[s];
            if (s < N_SOURCES) {{
                if (!st.presenting && t >= st.start && st.next * WORDS[s] < st.items.size())
                    st.presenting = !(st.stall > 0.0 && st.rng.uniform() < st.stall);
                if (m->dirty || st.presenting != st.driven ||
                    (st.presenting && st.next != st.driven_next)) {{
                    DRIVE[s](top, st.presenting, st.items.data() + st.next * WORDS[s]);
                    st.driven = st.presenting; st.driven_next = st.next; dirty = true;
                }}
            }} else {{
                const bool active = t >= st.start && (st.want || st.greedy);
                st.ready = active && !(st.stall > 0.0 && st.rng.uniform() < st.stall);
                if (m->dirty || st.ready != st.driven) {{
                    DRIVE[s](top, st.ready, nullptr);
                    st.driven = st.ready; dirty = true;
                }}
            }}
        }}
        // Else the model settled at the last edge, on these inputs or on inputs that reach
        // no output.
        if (ITF_INPUTS_REACH_OUTPUTS ? dirty : m->dirty) top->eval();
        m->dirty = false;
        for (int s = 0; s < N_STREAMS; s++) {{
            Stream& st = m->streams[s];
            const bool other = SHAKE[s](top);
            if (s < N_SOURCES) {{
                if (!st.presenting) continue;
                if (other) {{
                    if (st.first < 0) st.first = t - st.start;
                    st.last = t - st.start;
                    st.transfers++; st.next++; st.presenting = false; st.wait = 0;
                }} else if (++st.wait > st.budget) {{
                    m->timed_out = s; return 1;
                }}
            }} else {{
                if (st.ready && other) {{
                    size_t at = st.items.size();
                    st.items.resize(at + WORDS[s]);
                    PAYLOAD[s](top, st.items.data() + at);
                    if (st.first < 0) st.first = t - st.start;
                    st.last = t - st.start;
                    st.transfers++; st.wait = 0;
                    if (st.want) st.want--;
                }} else if (st.want && t >= st.start && ++st.wait > st.budget) {{
                    m->timed_out = s; return 1;
                }}
            }}
        }}
{count_outputs}
        top->clk = 1;
        top->eval();
        top->clk = 0;
        if (!note_fall(top->rootp, 0)) m->dirty = true;     // then the next cycle evaluates
        m->cycle++;
    }}
}}

// One request and its answer in one call, on byte streams (items of at most 8 bits, one word
// each): queue the n bytes of data on source src, run the clock until sink snk has collected
// `want` items (mode 1, at most max_cycles cycles), and move them into out as bytes. Returns
// itf_run's status; out is filled only when it is 0. The same cycles as itf_push, itf_expect,
// itf_run and itf_take called in turn.
int itf_transfer_bytes(void* p, int src, const uint8_t* data, uint64_t n, int snk,
                       uint64_t want, uint64_t max_cycles, uint8_t* out) {{
    Model* m = static_cast<Model*>(p);
    if (n) {{
        std::vector<uint32_t> words(data, data + n);
        itf_push(p, src, words.data(), n);
    }}
    Stream& st = m->streams[snk];
    const uint64_t have = st.items.size();
    int status = 0;
    if (have < want) {{
        itf_expect(p, snk, want - have);
        status = itf_run(p, 1, max_cycles, -1);
    }}
    if (status == 0) {{
        std::copy(st.items.begin(), st.items.begin() + want, out);
        st.items.erase(st.items.begin(), st.items.begin() + want);
    }}
    return status;
}}

}}  // extern "C"
#pragma GCC visibility pop
"""
