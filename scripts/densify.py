#!/usr/bin/env python3
"""Dense replay of a flow-log file, for throughput benchmarks: usage densify.py IN OUT RATE COPIES

A labelled capture like IoT-23 spans a year with a few records per window, so a benchmark on it
measures window closes, not records. This keeps every line's bytes except its times: copy c of the
input, line k, gets start_time T0 + (c * n + k) / RATE (end_time keeps the line's duration), so the
stream arrives at RATE records per second of event time, as a busy cluster's flows.log does.
Prints the number of lines written.
"""
import re, sys

src, out, rate, copies = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
T0 = 1748822400
lines = [l for l in open(src, "rb").read().split(b"\n") if l.strip()]
start = re.compile(rb'"start_time":(\d+)')
end = re.compile(rb'"end_time":(\d+)')
n = 0
with open(out, "wb") as f:
    for c in range(copies):
        for line in lines:
            s, e = start.search(line), end.search(line)
            t = T0 + int(n / rate)
            if s and e:
                dur = int(e.group(1)) - int(s.group(1))
                line = start.sub(b'"start_time":%d' % t, line, count=1)
                line = end.sub(b'"end_time":%d' % (t + dur), line, count=1)
            f.write(line + b"\n")
            n += 1
print(n)
