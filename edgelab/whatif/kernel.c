/* The what-if simulator's event loop: one pass over the arrivals of a keep-alive pool.
 *
 * Exact, sequential, and in C because each request's fate (warm or cold) depends on every
 * earlier one: a vectorised numpy model needed one full pass per link of a cold-start cascade
 * (8.1 s for an hour at 100 req/s x 3 runtimes x 2 placements), simpy 27 s for one of the
 * six, a Python loop 3.5 s, this ~10 ms a pass (benchmarks/whatif_speed.py, identical flags
 * in every case). Freestanding: the caller passes every buffer, nothing is
 * allocated, nothing from libc is linked.
 *
 * Policy (the real traffic scenario's): a request takes an idle slot if one is alive (warm),
 * else a new slot starts (cold). Idle slots form a stack: the most recently freed is taken
 * first, the longest idle expires first, keepalive_s after it went idle, but never below
 * floor_slots (pre-warmed). An instance has `concurrency` slots; instances alive at any time
 * = max(prewarm, ceil(alive slots / concurrency)), integrated exactly over [0, horizon_s].
 * With max_in_flight > 0 at most that many requests are in service at once (the real run's
 * worker threads); the others wait first come, first served, and take the pool as it is when
 * their service starts (queue_s: arrival to that start).
 *
 * Cold starts slow each other down (a measured fact on a 2-core host: ten containers starting
 * at once each take longer than one alone), so with nbuckets > 0 a cold start's time is not
 * drawn ahead: it is taken from the measured starts that began with as many others already
 * under way (k others starting: bucket_of[k], k >= nmap the last bucket), at the pre-drawn
 * quantile u[i] of that bucket; what it gave is written to cold_startup_out[i] (the latency
 * part; bucket_hold is how long that start held its instance, plus extra_hold_s; a start
 * counts as under way for its startup, begin to first response byte). With
 * nbuckets == 0, cold_service_s[i] is the service and cold_startup_out is left alone.
 */
typedef unsigned char u8;

static void heap_push(double *h, long *n, double v) {
    long i = (*n)++;
    while (i > 0) {
        long p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static double heap_pop(double *h, long *n) {
    double top = h[0], last = h[--(*n)];
    long i = 0;
    for (;;) {
        long c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static long instances(long slots, long concurrency, long prewarm) {
    long k = (slots + concurrency - 1) / concurrency;
    return k > prewarm ? k : prewarm;
}

/* out[0] = instance-seconds over [0, horizon_s], out[1] = peak instances. Returns 0. */
long whatif_serve(long n, const double *arrival_s, const double *cold_service_s,
                  const double *warm_service_s, double keepalive_s, long prewarm, long concurrency,
                  long max_in_flight, double horizon_s, long nbuckets, long nmap,
                  const long *bucket_of, const long *bucket_off,
                  const double *bucket_startup, const double *bucket_hold, const double *u,
                  double extra_hold_s, double *cold_startup_out, u8 *cold, double *queue_s,
                  double *heap, double *idle, double *starting, double *out) {
    long nheap = 0, lo = 0, hi = 0, alive = 0, peak = prewarm, nstarting = 0;
    long floor_slots = prewarm * concurrency;
    double area = 0.0, last_t = 0.0;
    for (long k = 0; k < floor_slots; k++) idle[hi++] = -1e300;
    alive = floor_slots;
    for (long i = 0; i <= n; i++) {
        double t = i < n ? arrival_s[i] : horizon_s;
        if (i < n && max_in_flight > 0 && nheap >= max_in_flight && heap[0] > t) t = heap[0];
        if (i < n) queue_s[i] = t - arrival_s[i];
        while (nheap > 0 && heap[0] <= t) idle[hi++] = heap_pop(heap, &nheap);
        while (lo < hi && alive > floor_slots && idle[lo] + keepalive_s < t) {
            double gone = idle[lo] + keepalive_s;
            if (gone < last_t) gone = last_t;
            area += (gone - last_t) * (double)instances(alive, concurrency, prewarm);
            last_t = gone;
            lo++;
            alive--;
        }
        double until = t < horizon_s ? t : horizon_s;
        if (until > last_t) {
            area += (until - last_t) * (double)instances(alive, concurrency, prewarm);
            last_t = until;
        }
        if (i == n) break;
        double service;
        if (hi > lo) {
            hi--;
            cold[i] = 0;
            service = warm_service_s[i];
        } else {
            alive++;
            cold[i] = 1;
            if (nbuckets > 0) {
                while (nstarting > 0 && starting[0] <= t) heap_pop(starting, &nstarting);
                long b = nstarting < nmap ? bucket_of[nstarting] : nbuckets - 1;
                long first = bucket_off[b], size = bucket_off[b + 1] - bucket_off[b];
                long j = first + (long)(u[i] * (double)size);
                if (j >= first + size) j = first + size - 1;
                cold_startup_out[i] = bucket_startup[j];
                service = bucket_hold[j] + extra_hold_s;
                heap_push(starting, &nstarting, t + bucket_startup[j]);
            } else {
                service = cold_service_s[i];
            }
            long now = instances(alive, concurrency, prewarm);
            if (now > peak) peak = now;
        }
        heap_push(heap, &nheap, t + service);
    }
    out[0] = area;
    out[1] = (double)peak;
    return 0;
}
