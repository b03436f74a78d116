#!/bin/bash
{{directives}}
# pfcon job {{jid}}: runs the job's container with {{runtime}} on this node, and records how it
# ended in {{job_dir}}/status so pfcon knows the outcome after Slurm forgets the job.
# This is pfcon's template (print it with `pfcon slurm-script`); a site may use its own file
# through SLURM_SCRIPT_TEMPLATE, keeping the placeholders and the status file's format.
set -u
export PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
job_dir={{job_dir}}
container="pfcon-slurm-${SLURM_JOB_ID}"
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
note() { printf '%s %s\n' "$(now)" "$*" >>"$job_dir/batch.log"; }

# scancel and the time limit send SIGTERM: stop the container now (it is not a child of this
# shell under docker or podman, so Slurm alone would leave it running)
signal=
interrupted=
on_signal() {
  signal=$1
  interrupted=yes
  note "received SIG$1, stopping the container"
  {{stop}} >>"$job_dir/batch.log" 2>&1
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_signal HUP' HUP
# the container never outlives this script, however it ends
trap '{{cleanup}} >/dev/null 2>&1' EXIT

printf 'started_at=%s\nnode=%s\n' "$(now)" "$(hostname)" >"$job_dir/started"
note starting {{image}}  # already quoted for the shell
{{run}} &
child=$!
while :; do
  interrupted=
  wait "$child"
  code=$?
  [ -z "$interrupted" ] && break  # else a trapped signal cut the wait short: wait again
done

read -r exit_code oom < <({ {{status}}; } 2>>"$job_dir/batch.log" || echo "$code" false)
{{cleanup}} >>"$job_dir/batch.log" 2>&1  # gone before the status says the job ended
printf 'exit_code=%s\nsignal=%s\noom=%s\nfinished_at=%s\n' \
  "${exit_code:-$code}" "$signal" "${oom:-false}" "$(now)" >"$job_dir/status.tmp"
mv -f "$job_dir/status.tmp" "$job_dir/status"
note "finished: exit code ${exit_code:-$code}${signal:+ after SIG$signal}, out of memory: ${oom:-false}"
exit "${exit_code:-$code}"
