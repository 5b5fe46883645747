// Reference face descriptors: @vladmandic/face-api (MIT) on the pure-JS tfjs CPU backend.
// face-api's node build requires the native @tensorflow/tfjs-node; we point that name at @tensorflow/tfjs.
const Module = require('module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return resolve.call(this, request === '@tensorflow/tfjs-node' ? '@tensorflow/tfjs' : request, ...rest);
};
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node.js');

async function main() {
  const [modelDir, inputPath, nText, outputPath] = process.argv.slice(2);
  const n = Number(nText);
  await tf.setBackend('cpu');
  await tf.ready();
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'face_recognition_model-weights_manifest.json')));
  const specs = manifest.flatMap((g) => g.weights);
  const data = Buffer.concat(manifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(modelDir, p)))));
  const weightMap = tf.io.decodeWeights(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), specs);
  const net = new faceapi.FaceRecognitionNet();
  net.loadFromWeightMap(weightMap);
  const pixels = new Uint8Array(fs.readFileSync(inputPath));
  const input = tf.tensor4d(pixels, [n, 150, 150, 3], 'int32');
  const out = net.forwardInput(await faceapi.toNetInput(tf.unstack(input)));
  fs.writeFileSync(outputPath, Buffer.from((await out.data()).buffer));
  console.log(`wrote ${n} descriptors (tfjs ${tf.version.tfjs}, backend ${tf.getBackend()})`);
}
main();
