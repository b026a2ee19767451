package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// redisStartTimeout bounds the wait for redis-server to answer.
const redisStartTimeout = 10 * time.Second

// startRedis starts the redis-server at path on a free loopback port, saving
// nothing to disk, waits until it answers PING, and returns its URL as the
// proxy's --session-store takes it, and the function that stops it.
func startRedis(ctx context.Context, path string) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(redisStartTimeout)
	for !redisAnswers(address) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer within %s", address, redisStartTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + address + "/0", stop, nil
}

// redisAnswers reports whether the Redis server at address answers PING.
func redisAnswers(address string) bool {
	conn, err := net.DialTimeout("tcp", address, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
