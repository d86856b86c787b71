#!/usr/bin/env python3
"""Identity flood: Calico flow lines that invent N distinct identities, for the memory-bound check.

Five established workloads (`shop/est0..4`) talk to `shop/db` for 20 one-minute windows; then, over
20 more windows, N new identities arrive with them: half spoofed public addresses (11.x.y.z) sending
to est0, half random pod names in namespace `flood` (a new replica-set hash each) connecting to est0;
then 5 quiet windows. Lines go to stdout.

    python3 scripts/identity-flood.py 10000000 | flowwarden replay - --summary-json flood.json
    # with /usr/bin/time -v in front of flowwarden for the peak RSS

Use `[window] length = "60s"` to make each minute one window, or leave `auto` (it picks 60 s here).
"""
import sys

T0 = 1750000020


def line(out, t, src, sns, stype, sip, dst, rep, b):
    ip = f'"{sip}"' if sip else "null"
    out.write(
        f'{{"start_time":{t},"end_time":{t + 60},"source_ip":{ip},"source_name":"-",'
        f'"source_name_aggr":"{src}","source_namespace":"{sns}","source_type":"{stype}",'
        f'"source_labels":{{"labels":["app=x"]}},"dest_ip":null,"dest_name":"-",'
        f'"dest_name_aggr":"{dst}","dest_namespace":"shop","dest_type":"wep",'
        f'"dest_labels":{{"labels":["app=y"]}},"dest_port":443,"proto":"tcp","action":"allow",'
        f'"reporter":"{rep}","bytes_in":2000,"bytes_out":{b},"packets_in":10,"packets_out":10,'
        f'"num_flows":1,"num_flows_started":1,"num_flows_completed":1}}\n'
    )


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: identity-flood.py N")
    n = int(sys.argv[1])
    out = sys.stdout
    t = T0

    def established(t):
        for k in range(5):
            line(out, t, f"est{k}-7d9c8b6f4-*", "shop", "wep", None, "db-5c6d7e8f9-*", "src", 1000000)

    for _ in range(20):
        established(t)
        t += 60
    per = (n + 19) // 20
    i = 0
    for _ in range(20):
        established(t)
        for _ in range(min(per, n - i)):
            if i % 2 == 0:
                ip = f"11.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
                line(out, t, "pub", "-", "net", ip, "est0-7d9c8b6f4-*", "dst", 500)
            else:
                pod = f"bot{i:x}-{(i * 0x9E3779B9) & 0xFFFFFFFFFFFFFFFF:x}-*"
                line(out, t, pod, "flood", "wep", None, "est0-7d9c8b6f4-*", "src", 500)
            i += 1
        t += 60
    for _ in range(5):
        established(t)
        t += 60


if __name__ == "__main__":
    main()
