-- wrk hook: print the run's totals as one JSON line, for ./run to parse.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
