// The website page's certificate line: when the TLS certificate its HTTPS
// checks saw expires (GET /monitor/:id/uptime).

export async function drawCertificate(id, ui) {
  const { api, utc } = ui;
  const line = document.getElementById("certificate");
  const uptime = (await api("GET", `/monitor/${id}/uptime`)).data;
  if (!line || !uptime?.certificate) return;
  const { not_after, days_left } = uptime.certificate;
  line.textContent =
    days_left < 0 ? `Certificate expired on ${utc(not_after)}` : `Certificate expires in ${days_left} day${days_left === 1 ? "" : "s"} (${utc(not_after)})`;
  line.className = days_left <= 14 ? "error" : "muted";
}
