// Page-walk probe: the cost of one random read into a large table, on 4 KiB or 2 MiB pages, with
// a software prefetch DIST reads ahead and WORK dependent multiply-adds between reads. It shows why
// flowwarden puts its large tables on huge pages (docs/performance.md, "Large blocks on 2 MiB
// boundaries").
//
//   cc -O2 -o /tmp/probe scripts/page-walk-probe.c
//   /tmp/probe MB HUGE DIST WORK        e.g. /tmp/probe 512 1 16 50

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <xmmintrin.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static inline uint64_t mix(uint64_t x){x^=x>>33;x*=0xff51afd7ed558ccdULL;x^=x>>33;return x;}
int main(int argc,char**argv){
  size_t bytes=(size_t)atol(argv[1])<<20; int huge=atoi(argv[2]); int dist=atoi(argv[3]); int work=atoi(argv[4]);
  size_t n=bytes/64;
  char*t=mmap(0,bytes+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  t=(char*)(((uintptr_t)t+(2<<20)-1)&~((uintptr_t)(2<<20)-1));
  if(huge) madvise(t,bytes,MADV_HUGEPAGE); else madvise(t,bytes,MADV_NOHUGEPAGE);
  memset(t,1,bytes);
  size_t iters=5000000; uint64_t s=0;
  double t0=now();
  for(size_t i=0;i<iters;i++){
    if(dist) _mm_prefetch(t+(mix(i+dist)%n)*64,_MM_HINT_T0);
    s+=t[(mix(i)%n)*64];
    for(int w=0;w<work;w++) s=s*6364136223846793005ULL+1;
  }
  double t1=now();
  printf("MB=%zu huge=%d dist=%d work=%d ns/access=%.1f (checksum %llu)\n",bytes>>20,huge,dist,work,(t1-t0)*1e9/iters,(unsigned long long)s);
}
