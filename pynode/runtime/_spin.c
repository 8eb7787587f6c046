/* pynode.runtime._spin: the busy wait's poll, with the GIL released.
 *
 * The busy wait (busywait.py) polls the event loop's selector for ~300 us before the loop
 * sleeps. Polled from Python, that loop holds the GIL between polls, and a thread the loop
 * has just woken (a BlockingNode receiver) keeps losing the GIL to it until the spin ends:
 * the blocking echo took 1.3-2.2x the async one. Here the whole spin runs without the GIL.
 *
 * wait_readable(fd, seconds) polls fd (the selector's own epoll or kqueue descriptor, which
 * is readable when it has events) with a zero timeout, yielding the CPU between polls as
 * erl's schedulers do, until it is readable or `seconds` have passed. It returns True when
 * the caller should poll its selector now (readable, or poll failed: the selector's own poll
 * then reports the error or handles the signal), False when the time ran out, or when a
 * yield showed that another thread wants this CPU (YIELD_TAKEN).
 *
 * read_ready(epfd, fd, seconds, size) is one read of fd and, when nothing was there,
 * wait_readable(epfd, seconds) and then one more, in one call: a task that waits for an
 * answer on fd reads it so (transport.py).
 *
 * Wakeup (Linux): the binary semaphore a BlockingNode's receiving thread waits on. wait()
 * spins for a moment without the GIL before it sleeps on a futex, as the loop does: woken
 * from a futex, the thread took 1.2-1.6x the async echo on a 2-core VM (a cross-CPU wake-up
 * there costs tens of microseconds); set() makes no system call while the waiter spins.
 * Set during its spin, the waiter takes the GIL once the loop thread that set it has let go
 * of it in its own spin (wait_readable), instead of going to sleep on the GIL meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <limits.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HAVE_WAKEUP 1
#endif

static double
monotonic_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Threads inside wait_readable's spin, holding no GIL there: event loops between two
 * iterations (Wakeup_wait waits for one to let go of the GIL). */
static atomic_int loop_spinners;

/* A yield that took this long gave the CPU to another thread, for a time slice: a yield with
 * nobody else runnable returns in about a microsecond (2 in 100,000 took 50 us or more on
 * an idle 2-core VM: interrupts, the hypervisor), an erl node's turn at a request on the
 * same CPU takes 15-20 us (a turn that answers: the spin goes on for it), and a sender's
 * time slice hundreds. See spin_until_readable; busywait.py has the same rule. */
#define YIELD_TAKEN 50e-6

/* The spin, without the GIL (the caller released it): 1 when fd is readable (or poll
 * failed), 2 when only `other` is (if not -1: a second descriptor polled with fd), 0 when
 * `seconds` ran out, or when a yield took YIELD_TAKEN or more: then this
 * CPU has another runnable thread, the spin only takes turns with it, and it ends as one
 * that ran out (the caller sleeps, and its gate learns that spins do not pay here). A spin
 * is for an otherwise idle CPU, as erl's: with an erl node streaming small messages to
 * pynode on one CPU, a spin that went on made pynode read in step with the sender, which
 * then sent each message in a TCP segment of its own and paid 4.4-5.5 us of CPU per message
 * instead of 2.2-2.8 (benchmarks/recv_place.py's shared placement, 2026-12-04). */
static atomic_long spins_given_up;  /* spins ended so, since the module was loaded */

static int
spin_poll(int fd, int other, double seconds)
{
    int state = 0;
    atomic_fetch_add(&loop_spinners, 1);
    double end = monotonic_now() + seconds;
    struct pollfd p[2];
    nfds_t count = other >= 0 ? 2 : 1;
    for (;;) {
        p[0].fd = fd;
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = other;
        p[1].events = POLLIN;
        p[1].revents = 0;
        int n = poll(p, count, 0);
        if (n < 0 || p[0].revents) {  /* readable, or an error (EINTR included) for the caller */
            state = 1;
            break;
        }
        if (n > 0) {  /* only `other` */
            state = 2;
            break;
        }
        double now = monotonic_now();
        if (now >= end)
            break;
        sched_yield();  /* another runnable process (say, the erl we wait for) goes first */
        if (monotonic_now() - now >= YIELD_TAKEN) {  /* it did, for a while: this CPU is busy */
            atomic_fetch_add(&spins_given_up, 1);
            break;
        }
    }
    atomic_fetch_sub(&loop_spinners, 1);
    return state;
}

static int
spin_until_readable(int fd, double seconds)
{
    return spin_poll(fd, -1, seconds);
}

static double
spin_seconds(double seconds)
{
    if (!(seconds >= 0.0))  /* NaN too */
        return 0.0;
    if (seconds > 1.0)  /* a spin is microseconds; this one cannot be interrupted (no GIL) */
        return 1.0;
    return seconds;
}

static PyObject *
wait_readable(PyObject *self, PyObject *args)
{
    int fd;
    double seconds;
    int ready;
    (void)self;
    if (!PyArg_ParseTuple(args, "id:wait_readable", &fd, &seconds))
        return NULL;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "wait_readable: negative file descriptor");
        return NULL;
    }
    seconds = spin_seconds(seconds);
    Py_BEGIN_ALLOW_THREADS
    ready = spin_until_readable(fd, seconds);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ready);
}

/* The read before the spin's first poll: with the peer on this CPU, its answer is most often
 * there already (the write that sent the request let the peer run, and it answered before
 * this thread got the CPU back), and the poll of the loop's epoll that found it cost a system
 * call of three per echo round trip. 1 when that read is the outcome (bytes, the end, or an
 * error other than EAGAIN); 0 when nothing is there yet: the spin follows (the failed read
 * then costs a call while the answer is still on its way, off the round trip's path). The
 * descriptors the spin would also have seen wait for the next poll, as they did when this
 * socket was readable at the first one. */
static int
read_first(int fd, char *into, size_t size, ssize_t *n, int *err)
{
    *n = recv(fd, into, size, MSG_DONTWAIT);  /* never blocks, even on a blocking socket */
    *err = errno;
    if (*n < 0 && *err == ENOTSOCK) {  /* (a pipe, say): the spin's poll says when to read */
        *n = -1;
        return 0;
    }
    return *n >= 0 || (*err != EAGAIN && *err != EWOULDBLOCK);
}

/* A read inline costs one call instead of two (wait_readable, then os.read) and holds no
 * GIL for either: the rpc round trip's own reads. */
static PyObject *
read_ready(PyObject *self, PyObject *args)
{
    int epfd, fd;
    double seconds;
    Py_ssize_t size;
    int ready;
    ssize_t n = -1;
    int err = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "iidn:read_ready", &epfd, &fd, &seconds, &size))
        return NULL;
    if (epfd < 0 || fd < 0) {
        PyErr_SetString(PyExc_ValueError, "read_ready: negative file descriptor");
        return NULL;
    }
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "read_ready: size must be positive");
        return NULL;
    }
    PyObject *buf = PyBytes_FromStringAndSize(NULL, size);
    if (buf == NULL)
        return NULL;
    char *into = PyBytes_AS_STRING(buf);
    seconds = spin_seconds(seconds);
    Py_BEGIN_ALLOW_THREADS
    ready = read_first(fd, into, (size_t)size, &n, &err);
    if (!ready) {
        ready = spin_until_readable(epfd, seconds);
        if (ready) {
            n = read(fd, into, (size_t)size);
            err = errno;
        }
    }
    Py_END_ALLOW_THREADS
    if (!ready) {
        Py_DECREF(buf);
        Py_RETURN_NONE;
    }
    if (n < 0) {
        Py_DECREF(buf);
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
            return PyBytes_FromStringAndSize(NULL, 0);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (n != size && _PyBytes_Resize(&buf, (Py_ssize_t)n) < 0)
        return NULL;
    return buf;
}

/* take_into(buf, epfd, fd, seconds, size, enough, reads): a task's reads of its answer
 * (Channel.take_inline) in one call: read_ready's spin and read, each read appended to the
 * bytearray buf, and enough(buf) asked after each, until it is true, the time is up, or
 * `reads` reads were made. The loop in Python cost 1.6-2.0 us of a 75-90 us rpc round trip
 * with erl on the same CPU (its frames run on caches erl has just used). Returns (outcome,
 * reads made): TAKE_ENOUGH, TAKE_SPENT (a spin ran out: nothing came), TAKE_LATE (the time
 * was up between reads), TAKE_EMPTY (a read found nothing: another descriptor's event, or
 * the end of the stream) or TAKE_STREAK (`reads` reads, enough never true). A failed read
 * raises OSError; what was read before it is in buf, as it is when enough raises. */
enum { TAKE_SPENT = 0, TAKE_ENOUGH = 1, TAKE_LATE = 2, TAKE_EMPTY = 3, TAKE_STREAK = 4 };

/* take_own's mask: fd's events in the loop's epoll set to `events` (0 hides fd from the loop;
 * the mask the loop registered puts it back). 0, or -1 with errno set (ENOSYS off Linux:
 * take_own then reads only what is there at once). The data word is the descriptor, as
 * Python's select.epoll sets it (the selector maps events back by it). */
static int
set_events(int epfd, int fd, unsigned int events)
{
#ifdef __linux__
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.fd = fd;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
#else
    (void)epfd;
    (void)fd;
    (void)events;
    errno = ENOSYS;
    return -1;
#endif
}

static PyObject *
take_reads(PyObject *const *args, Py_ssize_t nargs, int own)
{
    if (nargs != (own ? 9 : 7)) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d arguments", own ? "take_own" : "take_into", own ? 9 : 7);
        return NULL;
    }
    PyObject *buf = args[0], *enough = args[5];
    if (!PyByteArray_Check(buf)) {
        PyErr_Format(PyExc_TypeError, "%s: buf must be a bytearray", own ? "take_own" : "take_into");
        return NULL;
    }
    /* one at a time: a conversion may run Python code (__index__), never with an error set */
    long epfd, fd, mask = 0;
    double seconds;
    Py_ssize_t size, reads;
    if ((epfd = PyLong_AsLong(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if ((fd = PyLong_AsLong(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    if ((seconds = PyFloat_AsDouble(args[3])) == -1.0 && PyErr_Occurred())
        return NULL;
    if ((size = PyLong_AsSsize_t(args[4])) == -1 && PyErr_Occurred())
        return NULL;
    if ((reads = PyLong_AsSsize_t(args[6])) == -1 && PyErr_Occurred())
        return NULL;
    if (own && (mask = PyLong_AsLong(args[7])) == -1 && PyErr_Occurred())
        return NULL;
    int hidden = 0;  /* take_own: fd masked out of epfd, until the call returns */
    int kept = 0;    /* take_own: masked out already by the caller, who shows it again */
    if (own && (kept = PyObject_IsTrue(args[8])) < 0)
        return NULL;
    if (epfd < 0 || fd < 0 || epfd > INT_MAX || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: bad file descriptor", own ? "take_own" : "take_into");
        return NULL;
    }
    if (size <= 0 || reads <= 0) {
        PyErr_Format(PyExc_ValueError, "%s: size and reads must be positive", own ? "take_own" : "take_into");
        return NULL;
    }
    if (own && (mask < 0 || (unsigned long)mask > UINT_MAX)) {  /* (a 32-bit long: never) */
        PyErr_SetString(PyExc_ValueError, "take_own: bad mask");
        return NULL;
    }
    double end = monotonic_now() + spin_seconds(seconds);
    Py_ssize_t made = 0;
    int outcome = TAKE_EMPTY;
    int failed = 0;  /* an exception is set */
    for (;;) {
        double left = end - monotonic_now();
        if (left <= 0.0) {
            outcome = TAKE_LATE;
            break;
        }
        Py_ssize_t had = PyByteArray_GET_SIZE(buf);
        if (size > PY_SSIZE_T_MAX - had) {
            PyErr_NoMemory();
            failed = 1;
            break;
        }
        if (PyByteArray_Resize(buf, had + size) < 0) {
            failed = 1;
            break;
        }
        /* an export while the GIL is released: a thread that enough() gave buf to gets a
         * BufferError if it resizes buf then, instead of our read landing in freed memory */
        Py_buffer view;
        if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
            (void)PyByteArray_Resize(buf, had);  /* shrinking an unexported bytearray */
            failed = 1;
            break;
        }
        char *into = (char *)view.buf + had;
        int ready;
        ssize_t n = -1;
        int err = 0;
        int unhideable = 0;
        Py_BEGIN_ALLOW_THREADS
        ready = read_first((int)fd, into, (size_t)size, &n, &err);
        if (!ready && own && !hidden && !kept) {
            /* nothing there yet: the loop must not be woken for the bytes this thread waits
             * for (only now: an answer there at once costs no epoll_ctl either way) */
            if (set_events((int)epfd, (int)fd, 0) == 0)
                hidden = 1;
            else
                unhideable = 1;
        }
        if (!ready && !unhideable) {
            /* own: fd and the loop's epoll polled together (2: only epfd) */
            ready = own ? spin_poll((int)fd, (int)epfd, left) : spin_until_readable((int)epfd, left);
            if (ready == 2) {
                ready = 1;  /* another event for the loop: read() finds nothing (TAKE_EMPTY) */
                n = -1;
                err = EAGAIN;
            } else if (ready) {
                n = read((int)fd, into, (size_t)size);
                err = errno;
            }
        }
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&view);
        if (PyByteArray_Resize(buf, had + (n > 0 ? (Py_ssize_t)n : 0)) < 0) {
            failed = 1;  /* a shrink: fails only if another thread took an export meanwhile */
            break;
        }
        if (unhideable) {  /* (fd not in epfd: the loop reads it, or the connection is done) */
            outcome = TAKE_EMPTY;
            break;
        }
        if (!ready) {
            outcome = TAKE_SPENT;
            break;
        }
        if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            failed = 1;
            break;
        }
        if (n <= 0) {
            outcome = TAKE_EMPTY;
            break;
        }
        made++;
        PyObject *r = PyObject_CallOneArg(enough, buf);
        if (r == NULL) {
            failed = 1;
            break;
        }
        int yes = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (yes < 0) {
            failed = 1;
            break;
        }
        if (yes) {
            outcome = TAKE_ENOUGH;
            break;
        }
        if (made >= reads) {
            outcome = TAKE_STREAK;
            break;
        }
    }
    /* (the loop cannot close or change fd meanwhile: it waits for the idle lock this thread
     * holds; so a failed restore is not expected, and with another exception on its way,
     * that one is raised) */
    if (hidden && set_events((int)epfd, (int)fd, (unsigned int)mask) < 0 && !failed) {
        /* the loop would never see fd again: its connection must end (the caller's OSError) */
        PyErr_SetFromErrno(PyExc_OSError);
        failed = 1;
    }
    if (failed)
        return NULL;
    return Py_BuildValue("(in)", outcome, made);
}

static PyObject *
take_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return take_reads(args, nargs, 0);
}

/* take_own(buf, epfd, fd, seconds, size, enough, reads, mask, hidden): take_into for a thread that
 * reads fd of the loop whose epoll is epfd, holding that loop's idle lock (a BlockingNode
 * receive reading its answer itself). An answer there at once is simply read. Else fd is
 * masked out of epfd (events 0) while the thread waits, so the loop is not woken for it, and
 * given `mask` (the events the loop registered it with) back before the call returns; fd and
 * epfd are polled together, and epfd alone readable (another event for the loop) ends it as
 * a read that found nothing (TAKE_EMPTY), as does a mask that cannot be set (fd not in
 * epfd). The bytes go into buf, which outlives an exception raised as the call returns (a
 * KeyboardInterrupt in the main thread): nothing read is lost. `hidden` true: fd is masked out
 * already (SpinningSelector.hide, before the thread's request) and is left so: the caller
 * shows it again. Putting the mask back failed: OSError (the loop would not see fd again). */
static PyObject *
take_own(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return take_reads(args, nargs, 1);
}

#ifdef HAVE_WAKEUP
typedef struct {
    PyObject_HEAD
    atomic_int state;    /* 1: set (a delivery not yet taken), 0: not set; the futex word */
    atomic_int sleepers; /* waiters inside futex_wait (set() wakes them only then) */
} WakeupObject;

/* After a set, how long a waiter that spun waits for an event loop to reach its spin (an
 * iteration ends 5-30 us after its delivery here) before it takes the GIL anyway. */
#define HANDOFF_WAIT 50e-6

static long
futex(atomic_int *word, int op, int value, const struct timespec *timeout)
{
    return syscall(SYS_futex, (int *)word, op | FUTEX_PRIVATE_FLAG, value, timeout, NULL, 0);
}

static PyObject *
Wakeup_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Wakeup() takes no arguments");
        return NULL;
    }
    WakeupObject *self = (WakeupObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        atomic_init(&self->state, 0);
        atomic_init(&self->sleepers, 0);
    }
    return (PyObject *)self;
}

static PyObject *
Wakeup_set(WakeupObject *self, PyObject *unused)
{
    (void)unused;
    atomic_store(&self->state, 1);
    if (atomic_load(&self->sleepers) > 0)
        futex(&self->state, FUTEX_WAKE, INT_MAX, NULL);
    Py_RETURN_NONE;
}

/* A longer timeout waits for ever: the timespec given to the futex stays far from time_t's
 * limits (threading.TIMEOUT_MAX, the fallback's, is of the same kind). A year. */
#define WAKEUP_FOREVER 31536000.0

/* wait(timeout, spin, handoff=False) -> bool: True when set (and unset again), False after
 * timeout seconds (negative, NaN or over a year: forever). Spins for up to spin seconds
 * first. With handoff (the setter is an event loop that spins in wait_readable), a set seen
 * during the spin waits for a thread in wait_readable before taking the GIL. A signal's
 * Python handler runs at once (an exception from it is raised here); then the wait goes on. */
static PyObject *
Wakeup_wait(WakeupObject *self, PyObject *args)
{
    double timeout, spin;
    int handoff = 0;
    if (!PyArg_ParseTuple(args, "dd|p:wait", &timeout, &spin, &handoff))
        return NULL;
    if (atomic_exchange(&self->state, 0) == 1)  /* set already: no GIL release at all */
        Py_RETURN_TRUE;
    if (!(spin >= 0.0))
        spin = 0.0;
    if (spin > 1.0)  /* a spin is microseconds, and a signal's handler waits for its end */
        spin = 1.0;
    int forever = !(timeout >= 0.0) || timeout > WAKEUP_FOREVER;
    double start = monotonic_now();
    double deadline = start + (forever ? 0.0 : timeout);
    int got = 0;
    if (spin > 0.0 && (forever || timeout > 0.0)) {
        Py_BEGIN_ALLOW_THREADS
        double spin_end = start + spin;
        if (!forever && deadline < spin_end)
            spin_end = deadline;
        for (;;) {
            if (atomic_exchange(&self->state, 0) == 1) {
                got = 1;
                break;
            }
            if (monotonic_now() >= spin_end)
                break;
            sched_yield();
        }
        if (got && handoff) {
            /* The loop thread that set this still holds the GIL, ending its iteration:
             * asking for the GIL now would put this thread to sleep on it until then, and
             * the wake-up costs more than the wait (tens of microseconds across CPUs on a
             * virtual machine). It lets go in its next spin: take the GIL then. */
            double hand_end = monotonic_now() + HANDOFF_WAIT;
            while (atomic_load(&loop_spinners) == 0 && monotonic_now() < hand_end)
                sched_yield();
        }
        Py_END_ALLOW_THREADS
        if (!got && PyErr_CheckSignals() < 0)  /* a signal came during the spin */
            return NULL;
    }
    while (!got) {
        double left = deadline - monotonic_now();
        if (!forever && left <= 0.0)
            break;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        atomic_fetch_add(&self->sleepers, 1);
        for (;;) {
            if (atomic_exchange(&self->state, 0) == 1) {
                got = 1;
                break;
            }
            struct timespec ts, *tp = NULL;
            if (!forever) {
                left = deadline - monotonic_now();
                if (left <= 0.0)
                    break;
                ts.tv_sec = (time_t)left;  /* under a year: no overflow */
                ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
                tp = &ts;
            }
            /* sleeps only while the word is still 0: a set() after the exchange is seen;
             * EAGAIN (set meanwhile) and ETIMEDOUT are looked at on the next turn */
            if (futex(&self->state, FUTEX_WAIT, 0, tp) == -1 && errno != EAGAIN && errno != ETIMEDOUT) {
                err = errno;  /* EINTR: a signal; anything else must not become a busy loop */
                break;
            }
        }
        atomic_fetch_sub(&self->sleepers, 1);
        Py_END_ALLOW_THREADS
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
        }
        else if (err != 0) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        else if (!got)
            break;  /* timed out */
    }
    return PyBool_FromLong(got);
}

static PyMethodDef Wakeup_methods[] = {
    {"set", (PyCFunction)Wakeup_set, METH_NOARGS,
     "set(): wake the waiter (or the next wait); several sets before a wait fold into one."},
    {"wait", (PyCFunction)Wakeup_wait, METH_VARARGS,
     "wait(timeout, spin, handoff=False) -> bool: True when set, False after timeout seconds "
     "(<0: never); spins without the GIL for up to spin seconds before it sleeps; with handoff, "
     "a set seen while spinning waits (50 us at most) for an event loop to spin before taking the GIL."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WakeupType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pynode.runtime._spin.Wakeup",
    .tp_basicsize = sizeof(WakeupObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A binary semaphore whose wait spins without the GIL before it sleeps.",
    .tp_new = Wakeup_new,
    .tp_methods = Wakeup_methods,
};
#endif

#ifdef FIONREAD
/* queued(fd) -> int: the bytes fd's socket holds unread (FIONREAD). A task that would read
 * them past the loop asks first whether they are a backlog (transport.py, _inline_window). */
static PyObject *
queued(PyObject *self, PyObject *arg)
{
    (void)self;
    int n = 0, fd = PyObject_AsFileDescriptor(arg); /* an int or an object with fileno() */
    if (fd < 0)
        return NULL;
    if (ioctl(fd, FIONREAD, &n) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(n);
}

/* hold(fd, seconds, gap, enough) -> int: while fd's socket holds some bytes but fewer than
 * `enough`, and they keep coming (the count grew within the last `gap` seconds), wait for
 * more, for `seconds` at most, yielding the CPU between looks (to the sender, when it runs on
 * this CPU); then the bytes it holds, without the GIL. A receiver that reads a stream as fast
 * as it comes empties the socket, the kernel ACKs at once, and the sender then pays for
 * smaller segments; reads that leave bytes queued let its writes join (transport.py, _HOLD;
 * benchmarks/recv_place.py, 2026-12-05). A yield
 * that took YIELD_TAKEN ends it, as it ends a spin: the bytes do not wait for whatever else
 * runs on this CPU for a time slice. */
static atomic_long holds_cut; /* holds ended so (YIELD_TAKEN), since the module was loaded */

static PyObject *
hold(PyObject *self, PyObject *args)
{
    int fd, enough, n = 0, last = -1, failed = 0;
    double seconds, gap;
    (void)self;
    if (!PyArg_ParseTuple(args, "iddi:hold", &fd, &seconds, &gap, &enough))
        return NULL;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "hold: negative file descriptor");
        return NULL;
    }
    seconds = spin_seconds(seconds);
    Py_BEGIN_ALLOW_THREADS
    double start = monotonic_now(), grew = start;
    for (;;) {
        if (ioctl(fd, FIONREAD, &n) < 0) {
            failed = errno;
            break;
        }
        if (n == 0 || n >= enough)
            break;
        double now = monotonic_now();
        if (n != last) {
            last = n;
            grew = now;
        }
        else if (now - grew >= gap)
            break;
        if (now - start >= seconds)
            break;
        sched_yield();
        if (monotonic_now() - now >= YIELD_TAKEN) {  /* another thread had this CPU a while */
            atomic_fetch_add(&holds_cut, 1);
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(n);
}
#endif

static PyObject *
given_up(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLong(atomic_load(&spins_given_up));
}

#ifdef FIONREAD
static PyObject *
cut(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLong(atomic_load(&holds_cut));
}
#endif

static PyMethodDef spin_methods[] = {
    {"given_up", given_up, METH_NOARGS,
     "given_up() -> int: spins (of wait_readable and read_ready) that ended early because a "
     "yield gave the CPU to another thread for a while, since the module was loaded."},
#ifdef FIONREAD
    {"queued", queued, METH_O, "queued(fd) -> int: the bytes fd holds unread (FIONREAD)."},
    {"holds_cut", cut, METH_NOARGS,
     "holds_cut() -> int: holds that a yield ended early (another thread had this CPU for a "
     "while), since the module was loaded."},
    {"hold", hold, METH_VARARGS,
     "hold(fd, seconds, gap, enough) -> int: while fd holds fewer than `enough` bytes unread "
     "(but some) and their count grew within `gap` seconds, wait for more, `seconds` at most, "
     "without the GIL; then the bytes fd holds. OSError when it cannot say."},
#endif
    {"take_into", (PyCFunction)(void (*)(void))take_into, METH_FASTCALL,
     "take_into(buf, epfd, fd, seconds, size, enough, reads) -> (outcome, reads made): "
     "read_ready's reads appended to the bytearray buf until enough(buf) is true (1), a spin "
     "runs out (0), the time is up between reads (2), a read finds nothing (3) or `reads` "
     "reads were made (4); OSError when a read fails (buf keeps what came before)."},
    {"wait_readable", wait_readable, METH_VARARGS,
     "wait_readable(fd, seconds) -> bool: poll fd without the GIL until it is readable "
     "(True) or seconds have passed (False); False sooner when another thread wants this CPU."},
    {"read_ready", read_ready, METH_VARARGS,
     "read_ready(epfd, fd, seconds, size) -> bytes | None: one read of up to size bytes from "
     "fd; when it found nothing, wait_readable(epfd, seconds) and one more; all without the "
     "GIL: None when the time ran out; "
     "b'' when fd had nothing (another descriptor's event) or its stream ended; OSError when "
     "the read failed."},
    {"take_own", (PyCFunction)(void (*)(void))take_own, METH_FASTCALL,
     "take_own(buf, epfd, fd, seconds, size, enough, reads, mask, hidden) -> (outcome, reads "
     "made): take_into for a thread that reads fd of the loop whose epoll is epfd: while it "
     "waits, fd is masked out of epfd (mask, its registered events, is put back before it "
     "returns; hidden: it is already, and is left so); fd "
     "and epfd are polled together, and epfd alone readable ends it as a read that found "
     "nothing (3)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef spin_module = {
    PyModuleDef_HEAD_INIT, "_spin", "The busy wait's poll, with the GIL released.", -1,
    spin_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__spin(void)
{
    PyObject *m = PyModule_Create(&spin_module);
    if (m == NULL)
        return NULL;
#ifdef HAVE_WAKEUP
    if (PyType_Ready(&WakeupType) < 0 || PyModule_AddObjectRef(m, "Wakeup", (PyObject *)&WakeupType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
