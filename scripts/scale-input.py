#!/usr/bin/env python3
# Synthetic input for the per-record cost curve (docs/performance.md):
#   usage scale-input.py N WINDOWS OUT [PERIOD [FIRST]]
# N workloads (namespaces of 100), each sending R records per window to 3 peers in its namespace,
# over W windows of 300 s, full-field Calico lines (~1 KB). Same records per workload for every N.
# With PERIOD K (default 1) workload i is active only in the windows w with (i + w) % K == 0, so
# every workload has been seen by window K and the windows after it are steady state (names
# registered, baselines built) even when only a few windows fit in memory.
# FIRST (default 0) is the first window's number: a file from FIRST = WINDOWS continues one from 0,
# for `bench --warm-up` (the curve's protocol in docs/performance.md):
#   scale-input.py 1000000 6 warm.jsonl 2; scale-input.py 1000000 6 steady.jsonl 2 6
#   flowwarden bench steady.jsonl --warm-up warm.jsonl --threads 1 --config config/curve.toml --json
# Run it with config/curve.toml: its warm-up of two windows lets the statistical detectors judge
# every size's second half, the 1M input's six windows included.
import sys, random
N=int(sys.argv[1]); W=int(sys.argv[2]); out=sys.argv[3]
K=int(sys.argv[4]) if len(sys.argv)>4 else 1
F=int(sys.argv[5]) if len(sys.argv)>5 else 0
R=2
T0=1748822400
tmpl=('{"start_time":%d,"end_time":%d,"source_ip":null,"source_name":"-","source_name_aggr":"app%d-7d9c8b6f4-*",'
 '"source_namespace":"ns%d","source_port":null,"source_type":"wep","source_labels":{"labels":["app=app%d"]},'
 '"dest_ip":null,"dest_name":"-","dest_name_aggr":"app%d-5f6b7c8d9-*","dest_namespace":"ns%d","dest_port":%d,"dest_type":"wep",'
 '"dest_labels":{"labels":["app=app%d"]},"dest_service_namespace":"-","dest_service_name":"-","dest_service_port":"-",'
 '"proto":"tcp","action":"allow","reporter":"src","policies":{"all_policies":["0|default|default.allow-ns|allow|0"],'
 '"enforced_policies":["0|default|default.allow-ns|allow|0"],"pending_policies":[]},"process_name":"java","process_id":"-",'
 '"num_process_names":1,"num_process_ids":1,"host":"node-%d","bytes_in":%d,"bytes_out":%d,"packets_in":%d,"packets_out":%d,'
 '"num_flows":%d,"num_flows_started":%d,"num_flows_completed":%d}\n')
rnd=random.Random(7+F)
n=0
with open(out,'w') as f:
    for w in range(F, F+W):
        s=T0+w*300
        for i in range(N):
            if (i+w)%K: continue
            ns=i//100
            for r in range(R):
                j=ns*100+((i%100)+1+r)%100
                if j>=N: j=ns*100
                b=rnd.randint(1000,200000)
                f.write(tmpl%(s,s+300,i,ns,i,j,ns,8080,j,i%50,b//3,b,b//900+1,b//800+1,3,3,3))
                n+=1
print(n)
