/* pynode.runtime._spin: the busy wait's poll, with the GIL released.
 *
 * The busy wait (busywait.py) polls the event loop's selector for ~100 us before the loop
 * sleeps. Polled from Python, that loop holds the GIL between polls, and a thread the loop
 * has just woken (a BlockingNode receiver) keeps losing the GIL to it until the spin ends:
 * the blocking echo took 1.3-2.2x the async one. Here the whole spin runs without the GIL.
 *
 * wait_readable(fd, seconds) polls fd (the selector's own epoll or kqueue descriptor, which
 * is readable when it has events) with a zero timeout, yielding the CPU between polls as
 * erl's schedulers do, until it is readable or `seconds` have passed. It returns True when
 * the caller should poll its selector now (readable, or poll failed: the selector's own poll
 * then reports the error or handles the signal), False when the time ran out.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <time.h>

static double
monotonic_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static PyObject *
wait_readable(PyObject *self, PyObject *args)
{
    int fd;
    double seconds;
    int ready = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "id:wait_readable", &fd, &seconds))
        return NULL;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "wait_readable: negative file descriptor");
        return NULL;
    }
    if (!(seconds >= 0.0))  /* NaN too */
        seconds = 0.0;
    if (seconds > 1.0)  /* a spin is microseconds; this one cannot be interrupted (no GIL) */
        seconds = 1.0;
    Py_BEGIN_ALLOW_THREADS
    double end = monotonic_now() + seconds;
    struct pollfd p;
    for (;;) {
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        int n = poll(&p, 1, 0);
        if (n != 0) {  /* readable, or an error (EINTR included) for the caller's poll */
            ready = 1;
            break;
        }
        if (monotonic_now() >= end)
            break;
        sched_yield();  /* another runnable process (say, the erl we wait for) goes first */
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ready);
}

static PyMethodDef spin_methods[] = {
    {"wait_readable", wait_readable, METH_VARARGS,
     "wait_readable(fd, seconds) -> bool: poll fd without the GIL until it is readable "
     "(True) or seconds have passed (False)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef spin_module = {
    PyModuleDef_HEAD_INIT, "_spin", "The busy wait's poll, with the GIL released.", -1,
    spin_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__spin(void)
{
    return PyModule_Create(&spin_module);
}
