/* Tier A: every pointer argument checked — NULL gives -EINVAL and a message
 * naming the argument; every _free accepts NULL. */
#include "harness.h"

int main(void) {
    ibstack_config *cfg = NULL;
    ibstack_ib_info info;
    char buf[64];

    CHECK_RC(ibstack_config_new(NULL), -EINVAL, "config_new(NULL)");
    CHECK_MSG_HAS("out is NULL", "config_new(NULL) message names the argument");
    CHECK_RC(ibstack_config_new(&cfg), 0, "config_new");

    CHECK_RC(ibstack_config_set(NULL, "ms_async_rdma_sl", "1"), -EINVAL, "config_set(cfg NULL)");
    CHECK_MSG_HAS("ibstack_config_set: cfg is NULL", "message names the function and argument");
    CHECK_RC(ibstack_config_set(cfg, NULL, "1"), -EINVAL, "config_set(key NULL)");
    CHECK_RC(ibstack_config_set(cfg, "ms_async_rdma_sl", NULL), -EINVAL, "config_set(value NULL)");
    CHECK_RC(ibstack_config_get(NULL, "ms_async_rdma_sl", buf, sizeof buf), -EINVAL, "config_get(cfg NULL)");
    CHECK_RC(ibstack_config_get(cfg, NULL, buf, sizeof buf), -EINVAL, "config_get(key NULL)");
    CHECK_RC(ibstack_config_get(cfg, "ms_async_rdma_sl", NULL, 10), -EINVAL, "config_get(buf NULL, len 10)");
    CHECK_RC(ibstack_config_get(cfg, "ms_async_rdma_sl", NULL, 0), 1, "config_get(buf NULL, len 0) gives the length");
    CHECK_RC(ibstack_config_load_file(NULL, "/etc/ceph/ceph.conf", "osd"), -EINVAL, "load_file(cfg NULL)");
    CHECK_RC(ibstack_config_load_file(cfg, NULL, "osd"), -EINVAL, "load_file(path NULL)");
    CHECK_RC(ibstack_config_to_json(NULL, buf, sizeof buf), -EINVAL, "config_to_json(cfg NULL)");

    CHECK_RC(ibstack_global_init(NULL), -EINVAL, "global_init(NULL)");

    CHECK_RC(ibstack_device_list_new(NULL), -EINVAL, "device_list_new(NULL)");
    CHECK_RC(ibstack_device_list_count(NULL), 0, "device_list_count(NULL) is 0");
    CHECK_RC(ibstack_device_list_name(NULL, 0, buf, sizeof buf), -EINVAL, "device_list_name(NULL)");

    CHECK_RC(ibstack_ib_new(NULL, NULL), -EINVAL, "ib_new(NULL, NULL)");
    CHECK_RC(ibstack_ib_new(cfg, NULL), -EINVAL, "ib_new(cfg, NULL)");
    CHECK_MSG_HAS("out is NULL", "ib_new names the NULL out-parameter");
    CHECK_RC(ibstack_ib_query(NULL, &info), -EINVAL, "ib_query(NULL)");
    CHECK_RC(ibstack_ib_device_name(NULL, buf, sizeof buf), -EINVAL, "ib_device_name(NULL)");
    CHECK_RC(ibstack_ib_async_fd(NULL), -EINVAL, "ib_async_fd(NULL)");

    ibstack_mem_mgr *mm = NULL;
    ibstack_chunk *ch = NULL;
    size_t n = 0;
    ibstack_mem_stats st;
    CHECK_RC(ibstack_mem_mgr_new(NULL, &mm), -EINVAL, "mem_mgr_new(ib NULL)");
    CHECK_RC(ibstack_mem_mgr_get_tx_chunks(NULL, 1, &ch, 1, &n), -EINVAL, "get_tx_chunks(NULL)");
    CHECK_RC(ibstack_mem_mgr_return_tx(NULL, &ch, 1), -EINVAL, "return_tx(NULL)");
    CHECK_RC(ibstack_mem_mgr_get_rx_chunk(NULL, &ch), -EINVAL, "get_rx_chunk(NULL)");
    CHECK_RC(ibstack_mem_mgr_release_rx_chunk(NULL, ch), -EINVAL, "release_rx_chunk(NULL)");
    CHECK_RC(ibstack_mem_mgr_stats(NULL, &st), -EINVAL, "mem_mgr_stats(NULL)");
    CHECK_RC(ibstack_mem_mgr_stats_json(NULL, buf, sizeof buf), -EINVAL, "mem_mgr_stats_json(NULL)");
    CHECK(!ibstack_mem_mgr_is_tx_buffer(NULL, buf), "is_tx_buffer(NULL) is false");
    CHECK(ibstack_mem_mgr_tx_chunk_by_buffer(NULL, buf) == NULL, "tx_chunk_by_buffer(NULL) is NULL");
    CHECK(ibstack_chunk_capacity(NULL) == 0 && ibstack_chunk_buffer(NULL) == NULL && ibstack_chunk_size(NULL) == 0,
          "chunk getters on NULL give 0/NULL");
    CHECK(ibstack_chunk_read(NULL, buf, 4) == 0 && ibstack_chunk_write(NULL, buf, 4) == 0, "chunk read/write NULL");
    CHECK_RC(ibstack_chunk_prepare_read(NULL, 1), -EINVAL, "chunk_prepare_read(NULL)");
    CHECK(ibstack_ib_pd_raw(NULL) == NULL, "ib_pd_raw(NULL)");
    ibstack_mem_mgr_free(NULL);

    CHECK(ibstack_strerror(-EINVAL) && strcmp(ibstack_strerror(-EINVAL), "EINVAL: invalid argument") == 0,
          "strerror(-EINVAL)");
    CHECK(strcmp(ibstack_strerror(ENODEV), "ENODEV: no such device") == 0, "strerror accepts positive values");
    CHECK(strcmp(ibstack_strerror(123456), "unknown error") == 0, "strerror of an unknown value");
    CHECK(strcmp(ibstack_port_state_str(4), "PORT_ACTIVE") == 0, "port_state_str(4)");

    /* last_error_message: length query, truncation, NUL termination */
    ibstack_config_set(NULL, "k", "v");
    size_t full = ibstack_last_error_message(NULL, 0);
    char small[8];
    memset(small, 'x', sizeof small);
    n = ibstack_last_error_message(small, sizeof small);
    CHECK(full > 8 && n == full && small[7] == '\0' && strlen(small) == 7, "last_error_message truncates (%zu)", full);

    /* the stream API for host messengers: NULL handles and out-pointers */
    struct sockaddr_storage ss;
    CHECK_RC(ibstack_listener_adopt(NULL, 0, &(ibstack_listener *){NULL}), -EINVAL, "listener_adopt(NULL stack)");
    CHECK_RC(ibstack_conn_adopt(NULL, 0, IBSTACK_ROLE_ACCEPTOR, &(ibstack_conn *){NULL}), -EINVAL, "conn_adopt(NULL stack)");
    CHECK_RC(ibstack_conn_peer_addr(NULL, &ss), -EINVAL, "conn_peer_addr(NULL)");
    CHECK_RC(ibstack_conn_local_addr(NULL, &ss), -EINVAL, "conn_local_addr(NULL)");
    CHECK_RC(ibstack_conn_shutdown(NULL), -EINVAL, "conn_shutdown(NULL)");
    ibstack_chunk *lent[1];
    CHECK_RC(ibstack_conn_recv_chunks(NULL, lent, 1), -EINVAL, "conn_recv_chunks(NULL)");
    struct iovec iv = {.iov_base = (void *)"x", .iov_len = 1};
    CHECK_RC(ibstack_conn_sendv(NULL, &iv, 1), -EINVAL, "conn_sendv(NULL)");
    CHECK_RC(ibstack_conn_release_chunks(NULL, lent, 0), -EINVAL, "conn_release_chunks(NULL)");
    CHECK_RC(ibstack_stack_mem_mgr(NULL, &(ibstack_mem_mgr *){NULL}), -EINVAL, "stack_mem_mgr(NULL)");
    CHECK_RC(ibstack_stack_counters(NULL, &(ibstack_counters){0}), -EINVAL, "stack_counters(NULL)");

    ibstack_config_free(NULL);
    ibstack_device_list_free(NULL);
    ibstack_ib_free(NULL);
    CHECK(1, "every _free accepts NULL");
    ibstack_config_free(cfg);
    DONE();
}
