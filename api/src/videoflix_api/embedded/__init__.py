"""Embedded mode: the whole platform on one machine (`python -m videoflix_api.embedded`).

How embedded and cluster mode differ; this is the one place that says it. Both run the same API
(`create_app`, routes, services), the same database models and migrations, the same transcoder
entrypoint and the same pure status functions (`videoflix_core.status.aggregate`, `outcome`,
`videoflix_core.outcome.write_outcome`). `create_app` takes the parts that differ as arguments:
`videoflix_api.dispatch.make_dispatcher` picks the cluster ones, `embedded.app.build` injects these.

  part            cluster mode                          embedded mode
  storage         S3Storage: presigned S3 URLs          LocalStorage: HMAC-signed /media/ URLs,
                                                        range requests served by the API process
  dispatcher      KubernetesDispatcher: creates the     LocalDispatcher: hands the same spec to
                  VideoTranscode CR; the operator acts  an in-process runner
  one step runs   as a Job pod                          as a subprocess, --workers at once
  its result      the pod's termination message         the {"result": ...} line / result file
                  else the stored result object (--result-to), else the step runs again: one rule,
                  videoflix_core.results.step_result (a lost pod or killed server is no failure)
  retries         Job backoffLimit; exit 2 fails        max_attempts; exit 2 fails at once
  chunked rung    an Indexed Job, retries per index;    a subprocess per index (its
                  audio and assemble Jobs               JOB_COMPLETION_INDEX), retried alone;
                  (VIDEOFLIX_CHUNK_SECONDS)             the same steps (--chunk-seconds)
  progress        steps plus running pods' percent      steps plus running subprocesses' percent
                  (read from their logs), both folded by videoflix_core.status.live_progress
  restart         CR status; the operator resumes       <data>/transcodes/<id>.json; resumes
  delete          finalizer removes the prefix          cancel removes the prefix
  database        PostgreSQL                            SQLite file (or PostgreSQL with a URL)
  mail            SMTP                                  logged (or --smtp-host)
"""
