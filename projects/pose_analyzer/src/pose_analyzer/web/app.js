// pose_analyzer live page: streams each selected webcam to /ws/streams/{id} as JPEG frames
// and draws the server's answers (skeleton, joint angles, reps, score, feedback) over the video.
// Protocol: see pose_analyzer/schemas.py.  Plain browser JavaScript, no build step.
"use strict";

// Keypoint layout of pose_analyzer/keypoints.py: 17 COCO keypoints, then 4 foot points.
const KEYPOINT_NAMES = [
  "nose", "left_eye", "right_eye", "left_ear", "right_ear",
  "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
  "left_heel", "right_heel", "left_foot_index", "right_foot_index",
];
// Bones: mirror of keypoints.SKELETON (pairs of keypoint indices).
const SKELETON = [
  [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12], [11, 12],
  [11, 13], [13, 15], [12, 14], [14, 16],
  [15, 17], [17, 19], [15, 19], [16, 18], [18, 20], [16, 20],
  [0, 1], [0, 2], [1, 3], [2, 4],
];
const FALLBACK_EXERCISES = [
  "squat", "lunge", "push_up", "biceps_curl", "glute_bridge", "jumping_jack", "horse_stance", "front_kick",
];
const COLORS = { left: "#ff9f1c", right: "#2ec4b6", centre: "#f1f1f1", joint: "#ffffff" };
const MIN_CONFIDENCE = 0.3;
const MAX_IN_FLIGHT = 2;     // the server keeps only the newest waiting frame: more would only be dropped
const MAX_WIDTH = 640;       // frames are downscaled to this width before JPEG encoding
const JPEG_QUALITY = 0.8;

// Testing hook: totals over all streams, updated as the page runs.
window.poseStats = {
  framesSent: 0, answers: 0, lastPeople: 0, lastKeypointsDrawn: 0, errors: [], exerciseSource: null,
};

const params = new URLSearchParams(location.search);
const apiKey = params.get("api_key");
const $ = (selector) => document.querySelector(selector);
let streams = [];

function showMessage(text, isError = false) {
  const el = $("#message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function withKey(url) {
  return apiKey ? `${url}${url.includes("?") ? "&" : "?"}api_key=${encodeURIComponent(apiKey)}` : url;
}

function pretty(name) {
  return name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

// --- exercises ---------------------------------------------------------------------------

// Accepts a list of names or of {name, display_name}, bare or under "exercises".
function exerciseEntries(body) {
  const items = Array.isArray(body) ? body : (body && Array.isArray(body.exercises) ? body.exercises : []);
  return items
    .map((item) => (typeof item === "string" ? { name: item, label: pretty(item) }
      : { name: item.name, label: item.display_name || pretty(item.name || "") }))
    .filter((item) => item.name);
}

async function loadExercises() {
  let entries = [];
  try {
    const response = await fetch(withKey("/api/exercises"), { headers: { Accept: "application/json" } });
    if (response.ok) entries = exerciseEntries(await response.json());
  } catch (err) {
    console.warn("exercise list unavailable, using the built-in one", err);
  }
  window.poseStats.exerciseSource = entries.length > 0 ? "service" : "built-in";
  if (entries.length === 0) entries = FALLBACK_EXERCISES.map((name) => ({ name, label: pretty(name) }));
  const select = $("#exercise");
  for (const { name, label } of entries) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = label;
    select.append(option);
  }
  const wanted = params.get("exercise");
  if (wanted && entries.some((e) => e.name === wanted)) select.value = wanted;
}

// --- cameras -----------------------------------------------------------------------------

async function listCameras() {
  const box = $("#cameras");
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    box.innerHTML = '<span class="error">This browser gives no camera access (it needs https or localhost).</span>';
    return;
  }
  let devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  if (devices.length > 0 && devices.every((d) => !d.label)) {
    // Labels and ids stay hidden until the user has allowed the camera once.
    try {
      const probe = await navigator.mediaDevices.getUserMedia({ video: true });
      probe.getTracks().forEach((t) => t.stop());
      devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    } catch (err) {
      showMessage(`Camera permission refused: ${err.message}`, true);
    }
  }
  box.replaceChildren();
  if (devices.length === 0) {
    box.innerHTML = '<span class="muted">No camera found.</span>';
    return;
  }
  devices.forEach((device, i) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = device.deviceId;
    input.dataset.label = device.label || `Camera ${i + 1}`;
    input.checked = i === 0;
    label.append(input, ` ${input.dataset.label}`);
    box.append(label);
  });
}

// --- one stream per camera ---------------------------------------------------------------

class CameraStream {
  constructor(deviceId, label, index, exercise, startMessage) {
    this.deviceId = deviceId;
    this.label = label;
    this.exercise = exercise;
    this.startMessage = startMessage;  // async () => the start message, or null (3D: see rigs3d)
    this.id = `cam${index + 1}-${Math.random().toString(36).slice(2, 8)}`;
    this.sentId = 0;
    this.answeredId = 0;
    this.answerTimes = [];
    this.running = false;
    this.grab = document.createElement("canvas");
    const node = $("#stream-template").content.firstElementChild.cloneNode(true);
    this.node = node;
    this.video = node.querySelector("video");
    this.overlay = node.querySelector("canvas.overlay");
    node.querySelector(".stream-name").textContent = label;
    $("#streams").append(node);
  }

  field(name) { return this.node.querySelector(`.${name}`); }

  setStatus(state, text) {
    const el = this.field("status");
    el.dataset.state = state;
    el.textContent = text || state;
  }

  async start() {
    const video = this.deviceId ? { deviceId: { exact: this.deviceId } } : true;
    try {
      this.media = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (err) {
      this.setStatus("closed", `camera error: ${err.message}`);
      return;
    }
    this.video.srcObject = this.media;
    await this.video.play().catch(() => {});
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(withKey(`${scheme}://${location.host}/ws/streams/${this.id}`));
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = async () => {
      const start = await this.startMessage();
      if (start) this.ws.send(JSON.stringify(start));
      this.running = true;
      this.setStatus("streaming");
      this.pump();
    };
    this.ws.onmessage = (event) => this.onMessage(event.data);
    this.ws.onerror = () => this.setStatus("closed", "connection error");
    this.ws.onclose = (event) => {
      this.running = false;
      const why = event.reason ? `: ${event.reason}` : "";
      this.setStatus("closed", this.summary || `closed (${event.code}${why})`);
      if (event.code !== 1000) window.poseStats.errors.push(`${this.id}: ${event.code}${why}`);
      this.releaseCamera();
    };
  }

  // Sends the next frame when fewer than MAX_IN_FLIGHT are unanswered.  Frame ids increase, and
  // an answer for frame N settles every earlier frame (answered or dropped by the server).
  pump() {
    if (!this.running || this.sending || this.sentId - this.answeredId >= MAX_IN_FLIGHT) return;
    const { videoWidth: w, videoHeight: h } = this.video;
    if (!w || !h) {
      setTimeout(() => this.pump(), 50);
      return;
    }
    const scale = Math.min(1, MAX_WIDTH / w);
    this.grab.width = Math.round(w * scale);
    this.grab.height = Math.round(h * scale);
    this.grab.getContext("2d").drawImage(this.video, 0, 0, this.grab.width, this.grab.height);
    const captureTs = performance.now() / 1000;
    this.sending = true;
    this.grab.toBlob((blob) => {
      this.sending = false;
      if (!blob || !this.running || this.ws.readyState !== WebSocket.OPEN) return;
      this.sentId += 1;
      this.ws.send(JSON.stringify({ type: "frame", frame_id: this.sentId, capture_ts: captureTs }));
      this.ws.send(blob);
      window.poseStats.framesSent += 1;
      requestAnimationFrame(() => this.pump());
    }, "image/jpeg", JPEG_QUALITY);
  }

  onMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "frame") {
      this.answeredId = Math.max(this.answeredId, message.frame_id);
      this.onFrame(message);
      this.pump();
    } else if (message.type === "rep") {
      this.onRep(message);
    } else if (message.type === "started") {
      if (this.onStarted) this.onStarted(message);
      this.setStatus("streaming", `streaming · ${message.backend}${message.exercise ? ` · ${pretty(message.exercise)}` : ""}`);
    } else if (message.type === "error") {
      window.poseStats.errors.push(`${this.id}: ${message.error.code}: ${message.error.message}`);
      showMessage(`${this.label}: ${message.error.message}`, true);
    } else if (message.type === "stopped") {
      this.summary = `stopped · ${message.frames_processed} frames, ${message.rep_count} reps`;
      this.setStatus("closed", this.summary);
    }
  }

  // A rep comes in a message of its own once the service committed it (after the answer of
  // the frame that completed it); the page keeps the latest.
  onRep(message) {
    const lastRep = message.rep;
    this.lastRep = lastRep;
    this.field("reps").textContent = String(message.rep_count);
    this.field("score").textContent = lastRep.score === null ? "–" : `${Math.round(lastRep.score)} / 100`;
    const list = this.field("feedback");
    list.replaceChildren(...lastRep.faults.map((fault) => {
      const item = document.createElement("li");
      item.textContent = fault.message;
      return item;
    }));
  }

  onFrame(result) {
    const now = performance.now();
    this.answerTimes.push(now);
    while (this.answerTimes.length > 1 && now - this.answerTimes[0] > 2000) this.answerTimes.shift();
    const span = (now - this.answerTimes[0]) / 1000;
    const fps = span > 0 ? (this.answerTimes.length - 1) / span : 0;
    this.field("fps").textContent = fps.toFixed(1);
    this.field("latency").textContent = `${Math.round(result.latency_ms)} ms`;
    this.field("dropped").textContent = String(Number(this.field("dropped").textContent) + result.dropped);
    this.field("people").textContent = String(result.people.length);
    this.field("reps").textContent = String(result.rep_count);
    result.lastRep = this.lastRep;
    if (result.pose3d && window.view3d) window.view3d.update(result.pose3d);
    const drawn = drawResult(this.overlay, result);
    const stats = window.poseStats;
    stats.answers += 1;
    stats.lastPeople = result.people.length;
    stats.lastKeypointsDrawn = drawn;
  }

  stop() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "stop" }));
      this.setStatus("closing", "stopping…");
    } else if (this.ws) {
      this.ws.close();
    }
    this.running = false;
  }

  releaseCamera() {
    if (this.media) this.media.getTracks().forEach((t) => t.stop());
  }
}

// --- drawing -----------------------------------------------------------------------------

function seen(point) {
  return point && point[0] !== null && point[1] !== null && point[2] >= MIN_CONFIDENCE;
}

function sideColor(name) {
  if (name.startsWith("left_")) return COLORS.left;
  if (name.startsWith("right_")) return COLORS.right;
  return COLORS.centre;
}

// Draws every person of a frame result; returns how many keypoints were drawn.
function drawResult(canvas, result) {
  if (canvas.width !== result.width || canvas.height !== result.height) {
    canvas.width = result.width;
    canvas.height = result.height;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const unit = Math.max(2, canvas.width / 240);
  let drawn = 0;
  for (const person of result.people) {
    const kps = person.keypoints;
    ctx.lineWidth = unit * 1.5;
    ctx.lineCap = "round";
    for (const [a, b] of SKELETON) {
      if (!seen(kps[a]) || !seen(kps[b])) continue;
      const nameA = KEYPOINT_NAMES[a];
      ctx.strokeStyle = sideColor(nameA) === sideColor(KEYPOINT_NAMES[b]) ? sideColor(nameA) : COLORS.centre;
      ctx.beginPath();
      ctx.moveTo(kps[a][0], kps[a][1]);
      ctx.lineTo(kps[b][0], kps[b][1]);
      ctx.stroke();
    }
    kps.forEach((point, i) => {
      if (!seen(point)) return;
      ctx.fillStyle = sideColor(KEYPOINT_NAMES[i]);
      ctx.beginPath();
      ctx.arc(point[0], point[1], unit * 1.6, 0, 2 * Math.PI);
      ctx.fill();
      drawn += 1;
    });
    drawAngles(ctx, person, unit);
    drawPersonLabel(ctx, person, unit);
  }
  drawHud(ctx, result, unit);
  return drawn;
}

function label(ctx, text, x, y, unit, color = "#ffffff") {
  ctx.font = `600 ${Math.round(unit * 6)}px system-ui, sans-serif`;
  const width = ctx.measureText(text).width;
  const pad = unit;
  ctx.fillStyle = "rgba(10, 14, 22, 0.7)";
  ctx.fillRect(x - pad, y - unit * 6, width + 2 * pad, unit * 7.5);
  ctx.fillStyle = color;
  ctx.fillText(text, x, y);
}

// Joint angles are named after their vertex keypoint (left_knee, ...): label them there.
function drawAngles(ctx, person, unit) {
  for (const [name, degrees] of Object.entries(person.angles)) {
    const index = KEYPOINT_NAMES.indexOf(name);
    if (index < 0 || degrees === null || !seen(person.keypoints[index])) continue;
    const [x, y] = person.keypoints[index];
    label(ctx, `${Math.round(degrees)}°`, x + unit * 3, y - unit * 2, unit, sideColor(name));
  }
}

function drawPersonLabel(ctx, person, unit) {
  const [x1, y1] = person.box;
  const phase = person.phase ? ` · ${person.phase}` : "";
  label(ctx, `#${person.track_id} · reps ${person.rep_count}${phase}`, x1, Math.max(unit * 6, y1 - unit * 2), unit);
}

function drawHud(ctx, result, unit) {
  const lastRep = result.lastRep;
  const lines = [`Reps ${result.rep_count}`];
  if (lastRep) lines.push(`Last score ${Math.round(lastRep.score)}/100`);
  if (lastRep) lastRep.faults.slice(0, 2).forEach((f) => lines.push(f.message));
  if (result.people.length === 0) lines.push("No one in view");
  lines.forEach((text, i) => label(ctx, text, unit * 4, unit * (10 + i * 9), unit, i === 0 ? "#ffe066" : "#ffffff"));
}

// --- page wiring -------------------------------------------------------------------------

function selectedCameras() {
  return [...document.querySelectorAll("#cameras input:checked")].map((i) => ({ id: i.value, label: i.dataset.label }));
}

async function startStreams() {
  const cameras = selectedCameras();
  if (cameras.length === 0) {
    showMessage("Pick at least one camera.", true);
    return;
  }
  stopStreams();
  $("#streams").replaceChildren();
  const exercise = $("#exercise").value;
  const starts = startMessages(exercise, $("#rig").value, cameras.length);
  streams = cameras.map((cam, i) => new CameraStream(cam.id, cam.label, i, exercise, starts[i]));
  if (starts.first) streams[0].onStarted = starts.first;
  $("#start").disabled = true;
  $("#stop").disabled = false;
  showMessage(`Streaming ${cameras.length} camera${cameras.length > 1 ? "s" : ""}${exercise ? ` · ${pretty(exercise)}` : ""}.`);
  await Promise.all(streams.map((s) => s.start()));
}

function stopStreams() {
  streams.forEach((s) => s.stop());
  $("#start").disabled = false;
  $("#stop").disabled = true;
}

$("#start").addEventListener("click", startStreams);
$("#stop").addEventListener("click", () => {
  stopStreams();
  showMessage("Stopped.");
});
$("#refresh").addEventListener("click", listCameras);
window.addEventListener("beforeunload", () => streams.forEach((s) => s.stop()));
window.poseReady = Promise.all([loadExercises(), listCameras(), loadRigs()]).catch((err) => showMessage(String(err), true));
