/*
 * snapback-io: the system calls Node.js has no binding for, used on the NBD server's large-read
 * and large-write paths and by the storage layers' inline I/O (docs/native-io.md).
 *
 * - spliceFile(): moves a file range into a pipe with splice(2). For data in the page cache
 *   this hands over page references: no copy. The range is in the pipe before any byte of the
 *   reply is sent, so a read error is still answered as an NBD error.
 * - a reply sender: one thread per NBD connection that writes replies to the socket (through
 *   its own dup of the descriptor) in order: bytes from buffers the caller keeps alive, and
 *   pipes (a header, then the pipe's contents spliced to the socket). It blocks in poll(2)
 *   while the socket is full, as nbdkit's connection threads do in send(2); the event loop
 *   never does. Completed jobs are reported in order through a thread-safe function. It also
 *   sets the socket's send buffer: with the default (about 200 KB) every 1 MiB reply needs
 *   several wake-ups of both sides.
 * - a payload receiver: one thread per NBD connection that takes a large WRITE's payload off
 *   the socket and splices it into the disk file (socket -> pipe -> file), one job at a time,
 *   while the event loop does not read the socket.
 * - pwriteAll() / preadAll(): positional I/O on the calling thread without Node's per-call
 *   argument checks (the inline I/O of small requests).
 * - copyFileRange(): a range of one file into another with copy_file_range(2), on libuv's
 *   thread pool (the restore of the model's regions: the kernel copies page cache to page
 *   cache once, where read and write copy twice through a buffer, with a pool hop each).
 *
 * Errors are thrown (or reported) as the errno value; the JavaScript side makes them errors
 * with a code (appliance/native/native-io.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(call)                                   \
  do {                                                \
    if ((call) != napi_ok) return throw_status(env);  \
  } while (0)

static napi_value throw_status(napi_env env) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, "NATIVE_ARGUMENT", info && info->error_message ? info->error_message : "bad argument");
  return NULL;
}

/* Throws an Error whose code is the errno's name-independent form "ERRNO_<n>" and whose
 * `errno` property is the number; the caller maps it. */
static napi_value throw_errno(napi_env env, int err, const char *what) {
  napi_value msg, code, error, num;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, "NATIVE_ERRNO", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_throw(env, error);
  return NULL;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < want) {
    napi_throw_type_error(env, "NATIVE_ARGUMENT", "too few arguments");
    return false;
  }
  return true;
}

static bool get_i32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "NATIVE_ARGUMENT", "expected an integer");
    return false;
  }
  return true;
}

static bool get_size(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 9007199254740991.0 || d != (double)(int64_t)d) {
    napi_throw_range_error(env, "NATIVE_ARGUMENT", "expected a non-negative safe integer");
    return false;
  }
  *out = (int64_t)d;
  return true;
}

/* ---- pipes and splice ------------------------------------------------------------------- */

/* openPipe(size) -> [readFd, writeFd]: non-blocking, close-on-exec, capacity at least size. */
static napi_value open_pipe(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  int32_t size;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &size)) return NULL;
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return throw_errno(env, errno, "pipe2");
  int got = fcntl(p[1], F_SETPIPE_SZ, size);
  if (got < 0 || got < size) {
    int err = got < 0 ? errno : ENOSPC;
    close(p[0]);
    close(p[1]);
    return throw_errno(env, err, "F_SETPIPE_SZ");
  }
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_int32(env, p[0], &v));
  CHECK(napi_set_element(env, out, 0, v));
  CHECK(napi_create_int32(env, p[1], &v));
  CHECK(napi_set_element(env, out, 1, v));
  return out;
}

/* closeFd(fd) */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) return throw_errno(env, errno, "close");
  return NULL;
}

/*
 * socketHungUp(fd) -> whether the socket can no longer carry a reply: poll(2) reports POLLHUP
 * (both directions shut: the peer closed a unix socket, or reset a TCP one) or POLLERR. A peer
 * that only shut its sending side (a half-close) has not hung up. Never blocks.
 */
static napi_value socket_hung_up(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t fd;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &fd)) return NULL;
  struct pollfd p = {.fd = fd, .events = 0, .revents = 0};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "poll");
  if (napi_get_boolean(env, n > 0 && (p.revents & (POLLHUP | POLLERR)) != 0, &out) != napi_ok) return NULL;
  return out;
}

static const char zeros[4096];

/*
 * spliceFile(fileFd, position, length, pipeWriteFd) -> bytes that came from the file
 * Puts `length` bytes at `position` of the file into the pipe; past the end of the file,
 * zeroes. The pipe must have room for all of them: a page per slot, so (position % page
 * size) + length at most its capacity; a full pipe fails with EAGAIN. On an error the pipe
 * holds part of the range: the caller discards it.
 */
static napi_value splice_file(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  int32_t file, pipe_w;
  int64_t position, length;
  if (!get_args(env, info, 4, argv) || !get_i32(env, argv[0], &file) || !get_size(env, argv[1], &position) ||
      !get_size(env, argv[2], &length) || !get_i32(env, argv[3], &pipe_w))
    return NULL;
  loff_t off = position;
  int64_t left = length, from_file = 0;
  while (left > 0) {
    ssize_t n = splice(file, &off, pipe_w, NULL, (size_t)left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR) continue;
      return throw_errno(env, errno, "splice from file");
    }
    if (n == 0) break; /* end of the file */
    left -= n;
    from_file += n;
  }
  while (left > 0) {
    ssize_t n = write(pipe_w, zeros, left < (int64_t)sizeof zeros ? (size_t)left : sizeof zeros);
    if (n < 0) {
      if (errno == EINTR) continue;
      return throw_errno(env, errno, "zeroes into pipe");
    }
    left -= n;
  }
  CHECK(napi_create_double(env, (double)from_file, &out));
  return out;
}

/* The arguments (fd, buffer, position) of pwriteAll and preadAll; false with an error thrown. */
static bool positional_args(napi_env env, napi_callback_info info, int32_t *fd, void **ptr, size_t *len, int64_t *position) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv) || !get_i32(env, argv[0], fd)) return false;
  if (napi_get_buffer_info(env, argv[1], ptr, len) != napi_ok) {
    napi_throw_type_error(env, "NATIVE_ARGUMENT", "expected a buffer");
    return false;
  }
  return get_size(env, argv[2], position);
}

/*
 * pwriteAll(fd, buffer, position): all of the buffer at `position`, on this thread (the inline
 * I/O of small writes: Node's fs.writeSync costs more in argument checks than the copy of 4 KiB).
 */
static napi_value pwrite_all(napi_env env, napi_callback_info info) {
  int32_t fd;
  int64_t position;
  void *ptr;
  size_t len;
  if (!positional_args(env, info, &fd, &ptr, &len, &position)) return NULL;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, (const char *)ptr + done, len - done, (off_t)position + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return throw_errno(env, errno, "pwrite");
    }
    done += (size_t)n;
  }
  return NULL;
}

/*
 * preadAll(fd, buffer, position) -> bytes read: fills the buffer from `position`, short only at
 * the end of the file (the caller zero-fills the rest).
 */
static napi_value pread_all(napi_env env, napi_callback_info info) {
  napi_value out;
  int32_t fd;
  int64_t position;
  void *ptr;
  size_t len;
  if (!positional_args(env, info, &fd, &ptr, &len, &position)) return NULL;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, (char *)ptr + done, len - done, (off_t)position + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return throw_errno(env, errno, "pread");
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  CHECK(napi_create_double(env, (double)done, &out));
  return out;
}

/* ---- kernel copies ----------------------------------------------------------------------- */

/* One copyFileRange job: its own dups of both descriptors, valid whatever the caller closes. */
typedef struct {
  napi_async_work work;
  napi_ref callback;
  int in, out;
  int64_t in_position, out_position, length, done;
  int err;
} copy_job_t;

/* On a thread of libuv's pool: copy until done, an error, or the end of the input file. */
static void copy_execute(napi_env env, void *data) {
  (void)env;
  copy_job_t *j = data;
  loff_t in_off = j->in_position, out_off = j->out_position;
  while (j->done < j->length) {
    int64_t left = j->length - j->done;
    ssize_t n = copy_file_range(j->in, &in_off, j->out, &out_off, left > (1 << 30) ? (size_t)1 << 30 : (size_t)left, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      j->err = errno;
      break;
    }
    if (n == 0) break; /* the end of the input file */
    j->done += n;
  }
}

/* On the event loop: close the dups, free the job, then call back (errno, bytes copied). */
static void copy_complete(napi_env env, napi_status status, void *data) {
  copy_job_t *j = data;
  close(j->in);
  close(j->out);
  napi_value cb = NULL, recv, argv[2];
  napi_get_reference_value(env, j->callback, &cb);
  napi_get_undefined(env, &recv);
  napi_create_int32(env, status == napi_cancelled ? ECANCELED : j->err, &argv[0]);
  napi_create_double(env, (double)j->done, &argv[1]);
  napi_delete_reference(env, j->callback);
  napi_delete_async_work(env, j->work);
  free(j);
  if (cb != NULL) napi_call_function(env, recv, cb, 2, argv, NULL);
}

/*
 * copyFileRange(inFd, inPosition, outFd, outPosition, length, callback(errno, copied))
 * Copies `length` bytes on libuv's thread pool; `copied` is short only at the end of the input
 * file or on an error. EXDEV, EINVAL, EOPNOTSUPP, ENOSYS: the kernel cannot copy between these
 * files (the caller copies through a buffer). Throws only for bad arguments or no descriptor.
 */
static napi_value copy_file_range_job(napi_env env, napi_callback_info info) {
  napi_value argv[6], name;
  int32_t in, out;
  int64_t in_position, out_position, length;
  if (!get_args(env, info, 6, argv) || !get_i32(env, argv[0], &in) || !get_size(env, argv[1], &in_position) || !get_i32(env, argv[2], &out) ||
      !get_size(env, argv[3], &out_position) || !get_size(env, argv[4], &length))
    return NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[5], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "NATIVE_ARGUMENT", "expected a callback");
    return NULL;
  }
  copy_job_t *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_errno(env, ENOMEM, "copyFileRange");
  j->in = fcntl(in, F_DUPFD_CLOEXEC, 0);
  j->out = j->in < 0 ? -1 : fcntl(out, F_DUPFD_CLOEXEC, 0);
  if (j->in < 0 || j->out < 0) {
    int err = errno;
    if (j->in >= 0) close(j->in);
    free(j);
    return throw_errno(env, err, "copyFileRange");
  }
  j->in_position = in_position;
  j->out_position = out_position;
  j->length = length;
  bool queued = false;
  if (napi_create_reference(env, argv[5], 1, &j->callback) == napi_ok) {
    if (napi_create_string_utf8(env, "snapback:copyFileRange", NAPI_AUTO_LENGTH, &name) == napi_ok &&
        napi_create_async_work(env, NULL, name, copy_execute, copy_complete, j, &j->work) == napi_ok) {
      queued = napi_queue_async_work(env, j->work) == napi_ok;
      if (!queued) napi_delete_async_work(env, j->work);
    }
    if (!queued) napi_delete_reference(env, j->callback);
  }
  if (queued) return NULL;
  close(j->in);
  close(j->out);
  free(j);
  return throw_status(env);
}

/* ---- connection threads: what the reply sender and the payload receiver share ---------- */

/*
 * A thread of one NBD connection, working on its own dup of the socket (valid whatever the event
 * loop does with its descriptor). It waits in poll(2) on the socket and on an eventfd that wakes
 * it to stop, and reports to JavaScript through a thread-safe function. Its memory has two
 * owners, both on the JS thread: the JS external (until collected) and the thread-safe function
 * (until finalized after the thread is stopped); the last one frees it. The concrete thread's
 * struct starts with this one.
 */
typedef struct worker {
  const char *kind; /* SENDER or RECEIVER: the external is checked against it */
  int sock;
  int wake;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool closing;
  napi_threadsafe_function tsfn;
  int owners;
  void (*after_join)(struct worker *w); /* closes what the thread used besides sock and wake (or NULL) */
  void (*destroy)(struct worker *w);    /* frees what the concrete struct holds besides itself (or NULL) */
} worker_t;

static const char SENDER[] = "sender";
static const char RECEIVER[] = "receiver";

/* Its own dup of the socket and the wake eventfd: 0, or the errno (nothing left open). */
static int worker_open(worker_t *w, const char *kind, int fd) {
  w->kind = kind;
  w->wake = -1;
  w->sock = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (w->sock < 0) return errno;
  w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->wake >= 0) return 0;
  int err = errno;
  close(w->sock);
  w->sock = -1;
  return err;
}

/*
 * Waits until the socket has `events`: 0; `hangup` on an error or hang-up without them; EBADF;
 * ECANCELED when the worker is stopping; or poll's errno.
 */
static int wait_socket(worker_t *w, short events, int hangup) {
  struct pollfd p[2] = {{w->sock, events, 0}, {w->wake, POLLIN, 0}};
  for (;;) {
    int n = poll(p, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (p[1].revents) return ECANCELED;
    if (p[0].revents & POLLNVAL) return EBADF;
    if (p[0].revents & events) return 0;
    if (p[0].revents & (POLLERR | POLLHUP)) return hangup;
  }
}

/* An owner lets go (the thread-safe function finalized, or the JS external collected). */
static void worker_release(napi_env env, void *finalize_data, void *hint) {
  (void)env;
  (void)hint;
  worker_t *w = finalize_data;
  if (--w->owners > 0) return;
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  if (w->destroy != NULL) w->destroy(w);
  free(w);
}

/* Stops the thread and waits for it; then the thread-safe function lets go. Idempotent. */
static void worker_stop(worker_t *w) {
  pthread_mutex_lock(&w->mu);
  if (w->closing) {
    pthread_mutex_unlock(&w->mu);
    return;
  }
  w->closing = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  uint64_t one = 1;
  ssize_t ignored = write(w->wake, &one, sizeof one);
  (void)ignored;
  pthread_join(w->thread, NULL);
  if (w->after_join != NULL) w->after_join(w);
  close(w->sock);
  close(w->wake);
  napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
}

/*
 * Starts a worker whose descriptors are open (worker_open) and whose own fields are set: the
 * thread-safe function to `callback` through `report`, the thread at `main`, and the JS
 * external returned. On failure all of it is let go and the error thrown.
 */
static napi_value worker_start(napi_env env, worker_t *w, napi_value callback, const char *name, napi_threadsafe_function_call_js report, void *(*main)(void *)) {
  napi_value tsfn_name, out;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->owners = 1; /* the thread-safe function; the external adds itself below */
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &tsfn_name) != napi_ok ||
      napi_create_threadsafe_function(env, callback, NULL, tsfn_name, 0, 1, w, worker_release, w, report, &w->tsfn) != napi_ok) {
    if (w->after_join != NULL) w->after_join(w);
    close(w->sock);
    close(w->wake);
    w->owners = 1;
    worker_release(env, w, NULL);
    return throw_status(env);
  }
  /* The thread keeps the process alive only through the work the caller is waiting for. */
  napi_unref_threadsafe_function(env, w->tsfn);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int err = pthread_create(&w->thread, &attr, main, w);
  pthread_attr_destroy(&attr);
  if (err) {
    if (w->after_join != NULL) w->after_join(w);
    close(w->sock);
    close(w->wake);
    w->closing = true;
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort); /* its finalizer frees w */
    return throw_errno(env, err, "pthread_create");
  }
  w->owners++;
  if (napi_create_external(env, w, worker_release, NULL, &out) != napi_ok) {
    w->owners--;
    worker_stop(w);
    return throw_status(env);
  }
  return out;
}

/* The worker of `kind` behind a JS external; throws unless it is one, or when it is closed. */
static worker_t *get_worker(napi_env env, napi_value v, const char *kind) {
  worker_t *w = NULL;
  char message[64];
  if (napi_get_value_external(env, v, (void **)&w) != napi_ok || w == NULL || w->kind != kind) {
    snprintf(message, sizeof message, "expected a %s", kind);
    napi_throw_type_error(env, "NATIVE_ARGUMENT", message);
    return NULL;
  }
  if (w->closing) {
    snprintf(message, sizeof message, "the %s is closed", kind);
    napi_throw_error(env, "NATIVE_CLOSED", message);
    return NULL;
  }
  return w;
}

/* closeSender(sender) / closeReceiver(receiver): stops the thread and waits for it. Idempotent. */
static napi_value close_worker(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  worker_t *w = NULL;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (napi_get_value_external(env, argv[0], (void **)&w) != napi_ok || w == NULL) return throw_status(env);
  worker_stop(w);
  return NULL;
}

/* ---- the reply sender ------------------------------------------------------------------- */

enum { JOB_BYTES = 0, JOB_PIPE = 1 };

typedef struct {
  int kind;
  const char *ptr; /* JOB_BYTES: memory the caller keeps alive until the job is reported */
  size_t len;      /* bytes of the buffer, or of the pipe's contents */
  int pipe_r;      /* JOB_PIPE */
  size_t header_len;
  char header[40]; /* JOB_PIPE: sent before the pipe's contents */
} job_t;

typedef struct {
  worker_t w; /* first: the thread, its socket and its report (see worker_t) */
  job_t *jobs;
  size_t cap, head, tail; /* ring: [head, tail) queued, jobs[head] the one being sent */
  bool paused;
  size_t done; /* completed, not yet reported */
  int error;   /* errno of the failure that stopped the sender; 0 while it works */
  bool notify_pending;
} sender_t;

/* Waits until the socket takes more bytes; an errno if it failed or the sender is stopping. */
static int wait_writable(sender_t *s) {
  return wait_socket(&s->w, POLLOUT, EPIPE);
}

/* After a send or splice to the socket failed: 0 to try again (interrupted, or the socket has
 * room now), else the errno that stops the sender. */
static int after_failed_write(sender_t *s) {
  if (errno == EINTR) return 0;
  if (errno == EAGAIN) return wait_writable(s);
  return errno;
}

static int send_all(sender_t *s, const char *ptr, size_t len, int more) {
  while (len > 0) {
    ssize_t n = send(s->w.sock, ptr, len, MSG_DONTWAIT | MSG_NOSIGNAL | more);
    if (n < 0) {
      int err = after_failed_write(s);
      if (err) return err;
      continue;
    }
    ptr += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_pipe(sender_t *s, int pipe_r, size_t len) {
  while (len > 0) {
    ssize_t n = splice(pipe_r, NULL, s->w.sock, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE);
    if (n < 0) {
      int err = after_failed_write(s);
      if (err) return err;
      continue;
    }
    if (n == 0) return EIO; /* the pipe held less than promised */
    len -= (size_t)n;
  }
  return 0;
}

static void *sender_main(void *arg) {
  sender_t *s = arg;
  pthread_mutex_lock(&s->w.mu);
  for (;;) {
    while (!s->w.closing && (s->paused || s->head == s->tail || s->error)) pthread_cond_wait(&s->w.cv, &s->w.mu);
    if (s->w.closing) break;
    job_t job = s->jobs[s->head % s->cap];
    pthread_mutex_unlock(&s->w.mu);
    int err = job.kind == JOB_BYTES ? send_all(s, job.ptr, job.len, 0)
                                    : send_all(s, job.header, job.header_len, MSG_MORE);
    if (!err && job.kind == JOB_PIPE) err = send_pipe(s, job.pipe_r, job.len);
    pthread_mutex_lock(&s->w.mu);
    if (err == ECANCELED && s->w.closing) break;
    if (err) s->error = err;
    else {
      s->head++;
      s->done++;
    }
    if (!s->notify_pending) {
      s->notify_pending = true;
      napi_call_threadsafe_function(s->w.tsfn, NULL, napi_tsfn_nonblocking);
    }
  }
  pthread_mutex_unlock(&s->w.mu);
  return NULL;
}

/* On the JS thread: reports (completed jobs, errno) to the sender's callback. */
static void sender_report(napi_env env, napi_value callback, void *context, void *data) {
  (void)data;
  sender_t *s = context;
  if (env == NULL) return;
  pthread_mutex_lock(&s->w.mu);
  if (s->w.closing) {
    pthread_mutex_unlock(&s->w.mu);
    return;
  }
  size_t done = s->done;
  int error = s->error;
  s->done = 0;
  s->notify_pending = false;
  pthread_mutex_unlock(&s->w.mu);
  napi_value undefined, argv[2];
  napi_get_undefined(env, &undefined);
  napi_create_double(env, (double)done, &argv[0]);
  napi_create_int32(env, error, &argv[1]);
  napi_call_function(env, undefined, callback, 2, argv, NULL);
}

static void sender_destroy(worker_t *w) {
  free(((sender_t *)w)->jobs);
}

static sender_t *get_sender(napi_env env, napi_value v) {
  return (sender_t *)get_worker(env, v, SENDER);
}

/*
 * createSender(socketFd, sendBufferBytes, onReport(done, errno)) -> sender, paused
 * Sets the socket's send buffer to sendBufferBytes (0: left as it is): SO_SNDBUFFORCE where
 * the process may (CAP_NET_ADMIN), else SO_SNDBUF, which the kernel caps at net.core.wmem_max.
 */
static napi_value create_sender(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, sndbuf;
  if (!get_args(env, info, 3, argv) || !get_i32(env, argv[0], &fd) || !get_i32(env, argv[1], &sndbuf)) return NULL;
  sender_t *s = calloc(1, sizeof *s);
  if (s == NULL) return throw_errno(env, ENOMEM, "sender");
  s->cap = 64;
  s->jobs = calloc(s->cap, sizeof *s->jobs);
  s->paused = true;
  s->w.destroy = sender_destroy;
  int err = s->jobs == NULL ? ENOMEM : worker_open(&s->w, SENDER, fd);
  if (err) {
    free(s->jobs);
    free(s);
    return throw_errno(env, err, "sender");
  }
  if (sndbuf > 0 && setsockopt(s->w.sock, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
    setsockopt(s->w.sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf); /* capped at net.core.wmem_max */
  return worker_start(env, &s->w, argv[2], "snapback-reply-sender", sender_report, sender_main);
}

static bool push_job(napi_env env, sender_t *s, const job_t *job) {
  pthread_mutex_lock(&s->w.mu);
  if (s->tail - s->head == s->cap) {
    size_t cap = s->cap * 2;
    job_t *jobs = malloc(cap * sizeof *jobs);
    if (jobs == NULL) {
      pthread_mutex_unlock(&s->w.mu);
      throw_errno(env, ENOMEM, "sender queue");
      return false;
    }
    for (size_t i = s->head; i < s->tail; i++) jobs[i % cap] = s->jobs[i % s->cap];
    free(s->jobs);
    s->jobs = jobs;
    s->cap = cap;
  }
  s->jobs[s->tail % s->cap] = *job;
  s->tail++;
  pthread_mutex_unlock(&s->w.mu);
  pthread_cond_signal(&s->w.cv); /* after unlocking, as in receive_to_file */
  return true;
}

/*
 * The arguments every job starts with: (sender, buffer, ...) with `argc` in all. Returns the
 * sender and the buffer's bytes, or NULL with an exception pending.
 */
static sender_t *job_args(napi_env env, napi_callback_info info, size_t argc, napi_value *argv, void **ptr, size_t *len) {
  if (!get_args(env, info, argc, argv)) return NULL;
  sender_t *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  if (napi_get_buffer_info(env, argv[1], ptr, len) != napi_ok) {
    throw_status(env);
    return NULL;
  }
  return s;
}

/* sendBytes(sender, buffer): the buffer must stay alive until the job is reported. */
static napi_value send_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  job_t job = {0};
  void *ptr;
  sender_t *s = job_args(env, info, 2, argv, &ptr, &job.len);
  if (s == NULL) return NULL;
  job.kind = JOB_BYTES;
  job.ptr = ptr;
  push_job(env, s, &job);
  return NULL;
}

/* sendPipe(sender, header, pipeReadFd, length): the header is copied; the pipe must hold length bytes. */
static napi_value send_pipe_job(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  job_t job = {0};
  void *ptr;
  int32_t pipe_r;
  int64_t len;
  sender_t *s = job_args(env, info, 4, argv, &ptr, &job.header_len);
  if (s == NULL) return NULL;
  if (job.header_len > sizeof job.header) {
    napi_throw_range_error(env, "NATIVE_ARGUMENT", "header too long");
    return NULL;
  }
  if (!get_i32(env, argv[2], &pipe_r) || !get_size(env, argv[3], &len)) return NULL;
  job.kind = JOB_PIPE;
  memcpy(job.header, ptr, job.header_len);
  job.pipe_r = pipe_r;
  job.len = (size_t)len;
  push_job(env, s, &job);
  return NULL;
}

/* setPaused(sender, paused): a paused sender keeps its jobs until resumed. */
static napi_value set_paused(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool paused;
  if (!get_args(env, info, 2, argv)) return NULL;
  sender_t *s = get_sender(env, argv[0]);
  if (s == NULL) return NULL;
  CHECK(napi_get_value_bool(env, argv[1], &paused));
  pthread_mutex_lock(&s->w.mu);
  s->paused = paused;
  pthread_cond_signal(&s->w.cv);
  pthread_mutex_unlock(&s->w.mu);
  return NULL;
}

/* ---- the payload receiver ----------------------------------------------------------------- */

/*
 * One thread per NBD connection that receives a large WRITE's payload straight into the file:
 * the first bytes (already received by the event loop) written with pwrite, the rest spliced
 * socket -> pipe -> file. It blocks in poll(2) while the client has not sent more. One job at a
 * time: the event loop stops reading the socket while a job runs. A file error does not stop
 * the job: the rest of the payload is still taken off the socket (and dropped), so the stream
 * stays framed and the request can be answered with the error.
 *
 * The standing window: with a job, the event loop may grant the thread a range of the device
 * (device offsets [win_lo, win_hi), the file at offset + win_delta) that it may write by itself.
 * When the bytes that follow a payload are a whole request header of a plain WRITE (no flags) of
 * min_len to max_len bytes inside the window, the thread takes that payload too, without handing
 * back to the event loop: a client streaming large writes costs no wake-up of this thread and no
 * hand-over per request. Every job is still reported, in order (the event loop answers each);
 * the last one of a run says so and carries the bytes after it. The event loop revokes the window
 * (stopStanding) when the device needs it back: the thread then ends with the job it is in.
 */
#define REPORTS 64 /* reports the thread may queue ahead of the event loop */
/*
 * Inside a run, the event loop is woken for every REPORT_BATCH finished WRITEs, and whenever the
 * thread is about to wait for the client (which may be waiting for those answers) or the run
 * ends: a wake-up of the event loop is the costliest part of a large WRITE after the copy (on a
 * paravirtualized machine most of the event loop's time per request), and a client streaming
 * writes has already sent the next ones.
 */
#define REPORT_BATCH 8
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_REQUEST_HEADER 28 /* bytes: magic, flags, type, handle, offset, length */

typedef struct {
  int file_error, socket_error;
  uint32_t handle_hi, handle_lo, length;
  int64_t offset;
  size_t next_len; /* the last report of a run: bytes of the stream after it, in `next` */
  bool last;       /* the thread stopped after this job (else it went on with another) */
} receive_report_t;

typedef struct {
  worker_t w; /* first: the thread, its socket and its report (see worker_t) */
  int pipe_r, pipe_w;
  size_t pipe_size;
  bool has_job;
  /* the job */
  int file; /* our own dup of the caller's descriptor, closed when the run ends; -1 without one */
  int64_t position;
  size_t length;
  const char *prefix; /* memory the caller keeps alive until the job is reported */
  size_t prefix_len;
  char *next; /* where the bytes after the payload go, up to next_cap (also kept alive) */
  size_t next_cap;
  uint32_t handle_hi, handle_lo; /* the request, for its report */
  int64_t offset;
  /* the standing window (standing false: none, or revoked) */
  bool standing;
  int64_t win_lo, win_hi, win_delta;
  uint32_t min_len, max_len;
  /* finished jobs the event loop has not taken yet, oldest first */
  receive_report_t reports[REPORTS];
  unsigned report_head, report_count;
  unsigned unsignalled; /* reports queued since the event loop was last woken */
} receiver_t;

/* Wakes the event loop for the reports queued since it was last woken, if any. */
static void signal_reports(receiver_t *r) {
  pthread_mutex_lock(&r->w.mu);
  bool any = r->unsignalled > 0;
  r->unsignalled = 0;
  pthread_mutex_unlock(&r->w.mu);
  if (any) napi_call_threadsafe_function(r->w.tsfn, NULL, napi_tsfn_nonblocking);
}

/* Waits until the socket has bytes, or hung up (splice says which); an errno when stopping. */
static int wait_readable(receiver_t *r) {
  return wait_socket(&r->w, POLLIN, 0);
}

static char discard_buf[65536];

/* Empties `n` bytes from the pipe into the file at *pos; after a file error, drops them. */
static void drain_pipe(receiver_t *r, size_t n, loff_t *pos, int *file_error) {
  while (n > 0 && !*file_error) {
    ssize_t m = splice(r->pipe_r, NULL, r->file, pos, n, SPLICE_F_MOVE);
    if (m < 0) {
      if (errno == EINTR) continue;
      *file_error = errno;
      break;
    }
    if (m == 0) {
      *file_error = EIO;
      break;
    }
    n -= (size_t)m;
  }
  while (n > 0) {
    ssize_t m = read(r->pipe_r, discard_buf, n < sizeof discard_buf ? n : sizeof discard_buf);
    if (m < 0 && errno == EINTR) continue;
    if (m <= 0) break; /* cannot happen: the pipe holds n bytes */
    n -= (size_t)m;
  }
}

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/*
 * With the mutex held: if `h` (a whole request header) is a plain WRITE the standing window
 * covers, makes it the next job (its whole payload still to come) and returns true.
 */
static bool take_standing(receiver_t *r, const unsigned char *h) {
  if (!r->standing || be32(h) != NBD_REQUEST_MAGIC) return false;
  uint32_t flags_type = be32(h + 4);
  if (flags_type != 1u) return false; /* flags 0, type NBD_CMD_WRITE */
  uint32_t length = be32(h + 24);
  int64_t offset = (int64_t)(((uint64_t)be32(h + 16) << 32) | be32(h + 20));
  if (length < r->min_len || length > r->max_len || offset < r->win_lo || offset > r->win_hi - (int64_t)length) return false;
  r->handle_hi = be32(h + 8);
  r->handle_lo = be32(h + 12);
  r->offset = offset;
  r->position = offset + r->win_delta;
  r->length = length;
  r->prefix = NULL;
  r->prefix_len = 0;
  return true;
}

static void receive_job(receiver_t *r) {
  int file_error = 0, socket_error = 0;
  loff_t pos = r->position;
  size_t off = 0;
  while (off < r->prefix_len && !file_error) {
    ssize_t n = pwrite(r->file, r->prefix + off, r->prefix_len - off, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      file_error = errno;
      break;
    }
    off += (size_t)n;
    pos += n;
  }
  size_t left = r->length - r->prefix_len;
  pos = r->position + (loff_t)r->prefix_len;
  while (left > 0) {
    size_t want = left < r->pipe_size ? left : r->pipe_size;
    ssize_t n = splice(r->w.sock, NULL, r->pipe_w, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        signal_reports(r); /* the client may be waiting for them before it sends more */
        int err = wait_readable(r);
        if (err) {
          socket_error = err;
          break;
        }
        continue;
      }
      socket_error = errno;
      break;
    }
    if (n == 0) {
      socket_error = ECONNRESET; /* the client closed in the middle of a payload */
      break;
    }
    left -= (size_t)n;
    drain_pipe(r, (size_t)n, &pos, &file_error);
  }
  /* What already waits after the payload (the next request's header, if the client pipelines):
   * read here, it is either taken as the next job (the standing window) or comes back with the
   * report, and when it is another large WRITE the event loop hands that payload over without
   * reading the socket at all. Nothing waiting, the peer gone or an error: nothing read, and the
   * event loop's own reads find out. */
  ssize_t got = 0;
  if (!socket_error && r->next_cap > 0) {
    do got = recv(r->w.sock, r->next, r->next_cap, MSG_DONTWAIT);
    while (got < 0 && errno == EINTR);
  }
  pthread_mutex_lock(&r->w.mu);
  receive_report_t *rep = &r->reports[(r->report_head + r->report_count) % REPORTS];
  r->report_count++;
  rep->file_error = file_error;
  rep->socket_error = socket_error;
  rep->handle_hi = r->handle_hi;
  rep->handle_lo = r->handle_lo;
  rep->offset = r->offset;
  rep->length = (uint32_t)r->length;
  rep->next_len = 0;
  rep->last = !(got == NBD_REQUEST_HEADER && !socket_error && !r->w.closing && r->report_count < REPORTS && take_standing(r, (const unsigned char *)r->next));
  if (rep->last) {
    rep->next_len = got > 0 ? (size_t)got : 0;
    close(r->file);
    r->file = -1;
    r->has_job = false;
  }
  bool wake = rep->last || ++r->unsignalled >= REPORT_BATCH;
  if (wake) r->unsignalled = 0;
  pthread_mutex_unlock(&r->w.mu);
  if (wake) napi_call_threadsafe_function(r->w.tsfn, NULL, napi_tsfn_nonblocking);
}

static void *receiver_main(void *arg) {
  receiver_t *r = arg;
  pthread_mutex_lock(&r->w.mu);
  for (;;) {
    while (!r->w.closing && !r->has_job) pthread_cond_wait(&r->w.cv, &r->w.mu);
    if (r->w.closing) break;
    pthread_mutex_unlock(&r->w.mu);
    receive_job(r);
    pthread_mutex_lock(&r->w.mu);
  }
  pthread_mutex_unlock(&r->w.mu);
  return NULL;
}

/*
 * On the JS thread: reports every finished job, oldest first, as (fileErrno, socketErrno,
 * nextBytes, handleHi, handleLo, offset, length, last).
 */
static void receiver_report(napi_env env, napi_value callback, void *context, void *data) {
  (void)data;
  receiver_t *r = context;
  if (env == NULL) return;
  for (;;) {
    pthread_mutex_lock(&r->w.mu);
    if (r->w.closing || r->report_count == 0) {
      pthread_mutex_unlock(&r->w.mu);
      return;
    }
    receive_report_t rep = r->reports[r->report_head];
    r->report_head = (r->report_head + 1) % REPORTS;
    r->report_count--;
    pthread_mutex_unlock(&r->w.mu);
    napi_value undefined, argv[8];
    napi_get_undefined(env, &undefined);
    napi_create_int32(env, rep.file_error, &argv[0]);
    napi_create_int32(env, rep.socket_error, &argv[1]);
    napi_create_uint32(env, (uint32_t)rep.next_len, &argv[2]);
    napi_create_uint32(env, rep.handle_hi, &argv[3]);
    napi_create_uint32(env, rep.handle_lo, &argv[4]);
    napi_create_double(env, (double)rep.offset, &argv[5]);
    napi_create_uint32(env, rep.length, &argv[6]);
    napi_get_boolean(env, rep.last, &argv[7]);
    if (napi_call_function(env, undefined, callback, 8, argv, NULL) != napi_ok) return; /* an exception: Node reports it */
  }
}

/* A job handed over but never started (closing came first) still holds its descriptor. */
static void receiver_after_join(worker_t *w) {
  receiver_t *r = (receiver_t *)w;
  if (r->file >= 0) close(r->file);
  r->file = -1;
  close(r->pipe_r);
  close(r->pipe_w);
}

static receiver_t *get_receiver(napi_env env, napi_value v) {
  return (receiver_t *)get_worker(env, v, RECEIVER);
}

/* createReceiver(socketFd, pipeBytes, onReport(fileErrno, socketErrno)) -> receiver */
static napi_value create_receiver(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, pipe_bytes;
  if (!get_args(env, info, 3, argv) || !get_i32(env, argv[0], &fd) || !get_i32(env, argv[1], &pipe_bytes)) return NULL;
  receiver_t *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, ENOMEM, "receiver");
  r->file = -1;
  r->w.after_join = receiver_after_join;
  int p[2] = {-1, -1};
  int err = worker_open(&r->w, RECEIVER, fd);
  bool opened = err == 0;
  if (!err && pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) err = errno;
  if (!err) {
    /* A larger pipe takes more of the payload per wake-up; the default (64 KiB) works too. */
    int got = pipe_bytes > 0 ? fcntl(p[1], F_SETPIPE_SZ, pipe_bytes) : -1;
    if (got < 0) got = fcntl(p[1], F_GETPIPE_SZ);
    if (got <= 0) err = errno ? errno : EINVAL;
    r->pipe_size = got > 0 ? (size_t)got : 0;
  }
  if (err) {
    if (opened) {
      close(r->w.sock);
      close(r->w.wake);
    }
    if (p[0] >= 0) close(p[0]);
    if (p[1] >= 0) close(p[1]);
    free(r);
    return throw_errno(env, err, "receiver");
  }
  r->pipe_r = p[0];
  r->pipe_w = p[1];
  return worker_start(env, &r->w, argv[2], "snapback-payload-receiver", receiver_report, receiver_main);
}

/*
 * receiveToFile(receiver, prefix, fileFd, position, length, next, handleHi, handleLo, offset,
 * windowEnd, minLength, maxLength): the WRITE of `length` bytes at device `offset` (file
 * `position`): the prefix (bytes already received; kept alive by the caller until reported), then
 * the rest from the socket; then whatever of the stream already waits, up to next.length bytes,
 * into `next` (also kept alive). With windowEnd > offset + length, the standing window [offset,
 * windowEnd): following plain WRITEs of minLength to maxLength bytes inside it are taken too (see
 * receiver_t). One run at a time.
 */
static napi_value receive_to_file(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  if (!get_args(env, info, 12, argv)) return NULL;
  receiver_t *r = get_receiver(env, argv[0]);
  if (r == NULL) return NULL;
  void *ptr, *next;
  size_t plen, next_cap;
  int32_t file;
  int64_t position, length, offset, win_end, min_len, max_len;
  uint32_t hi, lo;
  CHECK(napi_get_buffer_info(env, argv[1], &ptr, &plen));
  CHECK(napi_get_buffer_info(env, argv[5], &next, &next_cap));
  if (!get_i32(env, argv[2], &file) || !get_size(env, argv[3], &position) || !get_size(env, argv[4], &length)) return NULL;
  CHECK(napi_get_value_uint32(env, argv[6], &hi));
  CHECK(napi_get_value_uint32(env, argv[7], &lo));
  if (!get_size(env, argv[8], &offset) || !get_size(env, argv[9], &win_end) || !get_size(env, argv[10], &min_len) || !get_size(env, argv[11], &max_len)) return NULL;
  if ((int64_t)plen > length) {
    napi_throw_range_error(env, "NATIVE_ARGUMENT", "prefix longer than the payload");
    return NULL;
  }
  if (length > UINT32_MAX || min_len > UINT32_MAX || max_len > UINT32_MAX) {
    napi_throw_range_error(env, "NATIVE_ARGUMENT", "a length beyond 32 bits");
    return NULL;
  }
  pthread_mutex_lock(&r->w.mu);
  if (r->has_job || r->report_count > 0) {
    pthread_mutex_unlock(&r->w.mu);
    napi_throw_error(env, "NATIVE_BUSY", "the receiver has a job");
    return NULL;
  }
  /* The thread writes through its own descriptor, closed when the run ends: the caller may close
   * its own (a device closing) without the thread writing into whatever reuses the number. */
  int own = fcntl(file, F_DUPFD_CLOEXEC, 3);
  if (own < 0) {
    int err = errno;
    pthread_mutex_unlock(&r->w.mu);
    return throw_errno(env, err, "receiveToFile");
  }
  r->file = own;
  r->position = position;
  r->length = (size_t)length;
  r->prefix = ptr;
  r->prefix_len = plen;
  r->next = next;
  r->next_cap = next_cap;
  r->handle_hi = hi;
  r->handle_lo = lo;
  r->offset = offset;
  r->standing = win_end > offset + length;
  r->win_lo = offset;
  r->win_hi = win_end;
  r->win_delta = position - offset;
  r->min_len = (uint32_t)min_len;
  r->max_len = (uint32_t)max_len;
  r->has_job = true;
  pthread_mutex_unlock(&r->w.mu);
  /* Signalled after unlocking: the woken thread does not then wait for the mutex we hold (a
   * second futex call on each side per job). It checks has_job under the mutex, and the receiver
   * is freed only after the thread is joined, so the late signal is safe. */
  pthread_cond_signal(&r->w.cv);
  return NULL;
}

/* stopStanding(receiver): revokes the standing window; the thread ends with the job it is in. */
static napi_value stop_standing(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  receiver_t *r = get_receiver(env, argv[0]);
  if (r == NULL) return NULL;
  pthread_mutex_lock(&r->w.mu);
  r->standing = false;
  pthread_mutex_unlock(&r->w.mu);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"openPipe", NULL, open_pipe, NULL, NULL, NULL, napi_default, NULL},
      {"pwriteAll", NULL, pwrite_all, NULL, NULL, NULL, napi_default, NULL},
      {"preadAll", NULL, pread_all, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"socketHungUp", NULL, socket_hung_up, NULL, NULL, NULL, napi_default, NULL},
      {"copyFileRange", NULL, copy_file_range_job, NULL, NULL, NULL, napi_default, NULL},
      {"spliceFile", NULL, splice_file, NULL, NULL, NULL, napi_default, NULL},
      {"createSender", NULL, create_sender, NULL, NULL, NULL, napi_default, NULL},
      {"sendBytes", NULL, send_bytes, NULL, NULL, NULL, napi_default, NULL},
      {"sendPipe", NULL, send_pipe_job, NULL, NULL, NULL, napi_default, NULL},
      {"setPaused", NULL, set_paused, NULL, NULL, NULL, napi_default, NULL},
      {"closeSender", NULL, close_worker, NULL, NULL, NULL, napi_default, NULL},
      {"createReceiver", NULL, create_receiver, NULL, NULL, NULL, napi_default, NULL},
      {"receiveToFile", NULL, receive_to_file, NULL, NULL, NULL, napi_default, NULL},
      {"stopStanding", NULL, stop_standing, NULL, NULL, NULL, napi_default, NULL},
      {"closeReceiver", NULL, close_worker, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  /* A pipe holds one page per slot: a range that is not page-aligned needs one slot more. */
  napi_value page;
  if (napi_create_int32(env, (int32_t)sysconf(_SC_PAGESIZE), &page) != napi_ok || napi_set_named_property(env, exports, "pageSize", page) != napi_ok) return NULL;
  return exports;
}
