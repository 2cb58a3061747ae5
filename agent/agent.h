/*
 * agent: the daemon's one context. Every part of the running agent reaches
 * the others through this struct; it is created in main and passed down,
 * never global.
 */
#ifndef DROVER_AGENT_H
#define DROVER_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "pipeline.h"

struct event_base;
struct event;
struct store;
struct proc_table;
struct plugin_host;
struct scheduler;
struct kafka;
struct intake;
struct report;
struct admin;
struct http;
struct plugin_services;

struct agent {
	struct config *cfg; /* owned */
	struct event_base *base;
	struct store *store;
	struct proc_table *procs;
	struct plugin_host *plugins;
	struct pipeline_set pipelines;
	struct kafka *kafka; /* producer, embedded broker */
	struct intake *intake;
	struct report *report;
	struct scheduler *sched;
	struct admin *admin;
	struct http *http;		  /* async HTTP client on base (plugins' http_request) */
	struct plugin_services *services; /* the host table handed to plugins */
	struct metrics metrics;
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *drain_timer; /* bounds the plugins' drain at stop */
	bool is_stopping;
	bool has_left_loop;
	int exit_code;
};

/* Runs the daemon until SIGTERM/SIGINT; returns the process exit code. */
int agent_main(const char *config_path);

/* Begins an orderly stop (idempotent). */
void agent_stop(struct agent *a);

#endif
