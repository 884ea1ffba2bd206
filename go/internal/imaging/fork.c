/*
 * Keeping libvips' idle worker threads out of a forked child.
 *
 * libvips runs every pixel pipeline that fills a memory image (its WebP and interlaced PNG
 * loaders, bandjoin_const, ...) on threads of one process-wide set, and keeps a thread that
 * finished its task on a free list for 15 s. fork() copies that list but not the threads: the
 * child hands its first such task to a thread that does not exist and waits forever. The list is
 * private to libvips; the only public way to take threads off it is to give them work. So,
 * before fork, dg_fork_hold occupies every idle libvips thread with a task that waits (a thread
 * pool of one worker on a 1x1 image, run from a helper thread), until the free list is empty;
 * the child then starts threads of its own. dg_fork_release lets them go in the parent.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vips/vips.h>

#include "vips.h"

typedef struct dg_holder {
	GMutex lock;
	GCond cond;
	int started;  /* the pool's worker waits in our allocate function */
	int existing; /* ... on a libvips thread that existed before dg_fork_hold */
	int release;
	int failed; /* vips_threadpool_run returned without starting the worker */
	VipsImage *im;
	GThread *helper;
	struct dg_holder *next;
} dg_holder;

static dg_holder *dg_holders;

/* The libvips worker threads alive when dg_fork_hold began, by thread id. glib names the threads
 * libvips makes "libvips worker" (vips_g_thread_new). */
static pid_t *dg_workers;
static int dg_n_workers;

static int
dg_thread_named_worker(const char *tid)
{
	char path[64], comm[32];
	FILE *f;
	int yes = 0;

	snprintf(path, sizeof(path), "/proc/self/task/%s/comm", tid);
	if (!(f = fopen(path, "r")))
		return 0;
	if (fgets(comm, sizeof(comm), f))
		yes = !strncmp(comm, "libvips worker", 14);
	fclose(f);
	return yes;
}

static void
dg_list_workers(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int cap = 0;

	dg_n_workers = 0;
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !dg_thread_named_worker(e->d_name))
			continue;
		if (dg_n_workers == cap) {
			pid_t *grown = realloc(dg_workers, (cap = cap ? 2 * cap : 16) * sizeof(pid_t));

			if (!grown)
				break;
			dg_workers = grown;
		}
		dg_workers[dg_n_workers++] = (pid_t) atoi(e->d_name);
	}
	closedir(d);
}

static int
dg_listed_worker(pid_t tid)
{
	for (int i = 0; i < dg_n_workers; i++)
		if (dg_workers[i] == tid)
			return 1;
	return 0;
}

static VipsThreadState *
dg_hold_start(VipsImage *im, void *a)
{
	return vips_thread_state_new(im, a);
}

/* The holder's worker says it has started only here, about to wait: fork() must not copy a
 * thread in the middle of glib (making its thread state takes GObject's and GSlice's process-wide
 * locks, which the child would inherit held and wait on for ever). From the broadcast to the wait,
 * the worker holds only h->lock, which g_cond_wait releases, and its own pool's lock. */
static int
dg_hold_allocate(VipsThreadState *state, void *a, gboolean *stop)
{
	dg_holder *h = a;
	int existing = dg_listed_worker((pid_t) syscall(SYS_gettid));

	(void) state;
	g_mutex_lock(&h->lock);
	h->started = 1;
	h->existing = existing;
	g_cond_broadcast(&h->cond);
	while (!h->release)
		g_cond_wait(&h->cond, &h->lock);
	g_mutex_unlock(&h->lock);
	*stop = TRUE;
	return 0;
}

static int
dg_hold_work(VipsThreadState *state, void *a)
{
	(void) state;
	(void) a;
	return 0;
}

static void *
dg_hold_run(void *a)
{
	dg_holder *h = a;

	vips_threadpool_run(h->im, dg_hold_start, dg_hold_allocate, dg_hold_work, NULL, h);
	g_mutex_lock(&h->lock);
	if (!h->started) {
		h->failed = 1;
		g_cond_broadcast(&h->cond);
	}
	g_mutex_unlock(&h->lock);
	return NULL;
}

/* Occupies one libvips thread; returns the holder once its worker runs, NULL on failure. */
static dg_holder *
dg_hold_one(void)
{
	dg_holder *h = g_new0(dg_holder, 1);

	g_mutex_init(&h->lock);
	g_cond_init(&h->cond);
	h->im = vips_image_new_memory();
	vips_image_init_fields(h->im, 1, 1, 1, VIPS_FORMAT_UCHAR, VIPS_CODING_NONE,
			       VIPS_INTERPRETATION_B_W, 1.0, 1.0);
	/* A thread name of at most 15 bytes: Linux refuses longer ones. */
	if (vips_image_write_prepare(h->im) ||
	    !(h->helper = g_thread_try_new("dg fork hold", dg_hold_run, h, NULL))) {
		g_object_unref(h->im);
		g_free(h);
		return NULL;
	}
	g_mutex_lock(&h->lock);
	while (!h->started && !h->failed)
		g_cond_wait(&h->cond, &h->lock);
	g_mutex_unlock(&h->lock);
	h->next = dg_holders;
	dg_holders = h;
	return h->failed ? NULL : h;
}

/* Whether a listed worker still exists and is not one the holders occupy. */
static int
dg_workers_left(void)
{
	int left = 0;

	for (int i = 0; i < dg_n_workers; i++) {
		char tid[16];

		snprintf(tid, sizeof(tid), "%d", (int) dg_workers[i]);
		if (dg_workers[i] && dg_thread_named_worker(tid))
			left++;
		else
			dg_workers[i] = 0;
	}
	return left;
}

void
dg_fork_hold(void)
{
	/* A worker that was finishing a task when the caller stopped processing puts itself back
	 * on the free list microseconds later: wait for those (for up to a second: a thread another
	 * libvips user in the process keeps busy is not idle, and not on the list either). */
	gint64 deadline = g_get_monotonic_time() + G_TIME_SPAN_SECOND;
	int occupied = 0, rounds = 0;

	if (!dg_initialised())
		return;
	dg_list_workers();
	while (rounds++ < 4 * dg_n_workers + 16) {
		dg_holder *h = dg_hold_one();

		if (!h)
			break;
		if (h->existing)
			occupied++;
		else if (occupied >= dg_workers_left() || g_get_monotonic_time() > deadline)
			/* A new thread: the free list was empty, and no listed worker is unaccounted
			 * for. */
			break;
		else
			g_usleep(500);
	}
}

void
dg_fork_release(void)
{
	for (dg_holder *h = dg_holders; h; h = h->next) {
		g_mutex_lock(&h->lock);
		h->release = 1;
		g_cond_broadcast(&h->cond);
		g_mutex_unlock(&h->lock);
	}
	while (dg_holders) {
		dg_holder *h = dg_holders;

		dg_holders = h->next;
		g_thread_join(h->helper);
		g_object_unref(h->im);
		g_mutex_clear(&h->lock);
		g_cond_clear(&h->cond);
		g_free(h);
	}
}
